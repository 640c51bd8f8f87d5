package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step
func Count(ctx context.Context) (int, error) { return 0, nil }

//qflow:step
func Blob(ctx context.Context) ([]byte, error) { return nil, nil }

//qflow:step depends=Count map
func Each(ctx context.Context, n int) (int, error) { return n, nil }

//qflow:step depends=Blob map
func EachByte(ctx context.Context, b byte) (int, error) { return 0, nil }

//qflow:step map
func EachInput(ctx context.Context, n int) (int, error) { return n, nil }
