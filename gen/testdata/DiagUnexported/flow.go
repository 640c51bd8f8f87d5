package p

import "context"

//qflow:flow f
type input struct{ N int }

// Unexported step functions are fine: the generated code lives in this package.
//
//qflow:step
func fetch(ctx context.Context, in input) (int, error) { return 0, nil }
