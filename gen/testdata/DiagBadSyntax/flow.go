package p

import "context"

//qflow:flow f
type In struct{ N int }

//qflow:step depends= name=Bad-Name bogus retries=3 retries=4 map=yes
func B(ctx context.Context) (int, error) { return 0, nil }

//qflow:step depends=A,,9lives flow=
func C(ctx context.Context) (int, error) { return 0, nil }

//qflow:flow
type Nameless struct{}
