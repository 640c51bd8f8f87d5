package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step depends=Loop
func Loop(ctx context.Context, n int) (int, error) { return n, nil }
