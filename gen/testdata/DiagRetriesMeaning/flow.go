package p

import "context"

// The qflow_gen.go beside this file was written when retries=N meant N
// attempts in all: each retries=N that would now add an attempt is reported.
// attempts=N and retries=0 (refused before) are not.

//qflow:flow f retries=3
type In struct{ N int }

//qflow:step retries=5
func A(ctx context.Context, in In) (int, error) { return in.N, nil }

//qflow:step depends=A attempts=2
func B(ctx context.Context, a int) (int, error) { return a, nil }

//qflow:step depends=B retries=0
func C(ctx context.Context, b int) error { return nil }
