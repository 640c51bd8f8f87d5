package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step
func A(ctx context.Context) ([]int, error) { return nil, nil }

//qflow:step
func B(ctx context.Context) ([]int, error) { return nil, nil }

//qflow:step depends=A,B map
func Both(ctx context.Context, n int) (int, error) { return n, nil }
