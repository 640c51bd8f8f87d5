package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step
func Extract(ctx context.Context, in In) (int, error) { return in.N, nil }

//qflow:step depends=Extract
func Transform(ctx context.Context, n int) (int, error) { return n, nil }

//qflow:step depends=Extract,Transfrom
func Load(ctx context.Context, a int, b int) (int, error) { return a + b, nil }

//qflow:step depends=extract
func Audit(ctx context.Context, n int) error { return nil }

//qflow:step depends=Report
func Notify(ctx context.Context) error { return nil }
