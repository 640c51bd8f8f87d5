package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step depends=X1
func A1(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X2
func A2(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X3
func A3(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X4
func A4(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X5
func A5(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X6
func A6(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X7
func A7(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X8
func A8(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X9
func A9(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X10
func A10(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=X11
func A11(ctx context.Context) (int, error) { return 0, nil }
