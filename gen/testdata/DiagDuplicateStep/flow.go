package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step
func LoadRows(ctx context.Context) (int, error) { return 0, nil }

//qflow:step name=load_rows
func Reload(ctx context.Context) (int, error) { return 0, nil }
