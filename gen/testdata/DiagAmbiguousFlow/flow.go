package p

import "context"

//qflow:flow first
type A struct{ N int }

//qflow:flow second
type B struct{ N int }

//qflow:step
func Which(ctx context.Context) (int, error) { return 0, nil }

//qflow:step flow=third
func Unknown(ctx context.Context) (int, error) { return 0, nil }

//qflow:step flow=first
func One(ctx context.Context, a A) (int, error) { return 0, nil }

//qflow:step flow=second
func Two(ctx context.Context, b B) (int, error) { return 0, nil }
