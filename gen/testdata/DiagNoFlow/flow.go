package p

import "context"

//qflow:step
func Orphan(ctx context.Context) (int, error) { return 0, nil }
