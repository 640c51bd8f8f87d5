package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step
func NoCtx(in In) (int, error) { return 0, nil }

//qflow:step
func NoErr(ctx context.Context) int { return 0 }

//qflow:step
func Three(ctx context.Context) (int, int, error) { return 0, 0, nil }

//qflow:step
func Variadic(ctx context.Context, xs ...int) (int, error) { return 0, nil }

//qflow:step
func Generic[T any](ctx context.Context) (int, error) { return 0, nil }
