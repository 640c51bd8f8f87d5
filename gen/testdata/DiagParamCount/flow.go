package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step
func A(ctx context.Context) (string, error) { return "", nil }

//qflow:step
func B(ctx context.Context) ([]int, error) { return nil, nil }

//qflow:step depends=A,B
func C(ctx context.Context, a string) (int, error) { return 0, nil }

//qflow:step depends=B map
func D(ctx context.Context, in In, n int) (int, error) { return 0, nil }
