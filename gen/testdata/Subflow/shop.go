// Package shop has a flow, checkout, whose steps run another, charge, as
// child runs.
package shop

import "context"

//qflow:flow charge
type Payment struct {
	Order  string
	Amount int
}

//qflow:step flow=charge
func Pay(ctx context.Context, p Payment) (string, error) { return "paid " + p.Order, nil }

//qflow:flow checkout
type Cart struct{ Items []string }

//qflow:step flow=checkout
func Order(ctx context.Context, c Cart) (Payment, error) {
	return Payment{Order: "o1", Amount: len(c.Items)}, nil
}

// Charge runs flow charge as a child run: its body is never called.
//
//qflow:step flow=checkout depends=Order subflow=charge retries=2
func Charge(ctx context.Context, p Payment) (ChargeOutput, error) { panic("subflow") }

// Receipt has the JSON fields of ChargeOutput.
type Receipt struct {
	Pay string `json:"pay"`
}

//qflow:step flow=checkout depends=Order subflow=charge name=charge_again
func ChargeAgain(ctx context.Context, p Payment) (Receipt, error) { return Receipt{}, nil }

//qflow:step flow=checkout depends=Split map subflow=charge
func ChargeEach(ctx context.Context, p Payment) (ChargeOutput, error) { return ChargeOutput{}, nil }

//qflow:step flow=checkout depends=Order
func Split(ctx context.Context, p Payment) ([]Payment, error) { return []Payment{p}, nil }

// Total takes the output of a subflow step, typed by the child's generated
// output type.
//
//qflow:step flow=checkout depends=Charge,ChargeEach
func Total(ctx context.Context, one ChargeOutput, each []ChargeOutput) (string, error) {
	return one.Pay, nil
}
