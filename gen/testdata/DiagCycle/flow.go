package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step depends=C
func A(ctx context.Context, c int) (int, error) { return c, nil }

//qflow:step depends=A
func B(ctx context.Context, a int) (int, error) { return a, nil }

//qflow:step depends=B
func C(ctx context.Context, b int) (int, error) { return b, nil }

//qflow:step depends=E
func D(ctx context.Context, e int) (int, error) { return e, nil }

//qflow:step depends=D
func E(ctx context.Context, d int) (int, error) { return d, nil }
