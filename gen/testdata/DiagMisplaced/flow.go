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

// Comments that look like directives but are not read as one: each step
// would silently vanish from the flow.
//
// qflow:step
func Spaced(ctx context.Context) (int, error) { return 0, nil }

// QFlow:step depends=Ok
func Shouted(ctx context.Context, n int) (int, error) { return n, nil }

// qflow: prose that mentions qflow: is left alone.
func Prose() {}
