package p

import "context"

//qflow:flow orders
type A struct{ N int }

//qflow:flow orders
type B struct{ N int }

//qflow:flow Orders-2
type C struct{ N int }

//qflow:flow empty
type D struct{ N int }

//qflow:flow generic
type G[T any] struct{ V T }

//qflow:step flow=orders
func Place(ctx context.Context, a A) (int, error) { return 0, nil }

//qflow:step flow=empty depends=Place
func Elsewhere(ctx context.Context, n int) (int, error) { return 0, nil }
