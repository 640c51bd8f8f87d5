package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step
var NotAFunc = 1

//qflow:flow g
func NotAType(ctx context.Context) (int, error) { return 0, nil }

//qflow:stpe
func Typo(ctx context.Context) (int, error) { return 0, nil }

//qflow:step
func Ok(ctx context.Context) (int, error) { return 0, nil }

func body() {
	//qflow:step
	_ = 1
}
