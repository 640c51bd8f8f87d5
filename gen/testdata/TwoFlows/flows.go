package shop

import "context"

//qflow:flow checkout
type Order struct {
	ID    string
	Items []string
}

//qflow:flow refund_v2 retries=10
type Refund struct {
	OrderID string
	Cents   int64
}

//qflow:step flow=checkout
func Reserve(ctx context.Context, o Order) ([]string, error) { return o.Items, nil }

//qflow:step flow=checkout depends=Reserve attempts=1
func Charge(ctx context.Context, o Order, reserved []string) (string, error) { return "receipt", nil }

//qflow:step flow=checkout depends=Reserve
func Ship(ctx context.Context, reserved []string) (int, error) { return len(reserved), nil }

//qflow:step flow=refund_v2 name=pay_back
func PayBack(ctx context.Context, r Refund) (int64, error) { return r.Cents, nil }
