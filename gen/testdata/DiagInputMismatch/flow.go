package p

import "context"

//qflow:flow f
type In struct{ N int }

type Other struct{ N int }

//qflow:step
func A(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step depends=A
func B(ctx context.Context, in *In, a int) (int, error) { return 0, nil }

//qflow:step depends=A
func C(ctx context.Context, in Other, a int) (int, error) { return 0, nil }
