package orders

import "context"

//qflow:flow orders
type Order struct{ ID string }

// Charge is claimed before Receipt and Audit of other runs (priority=10).
//
//qflow:step priority=10
func Charge(ctx context.Context, o Order) (string, error) { return "ch_" + o.ID, nil }

// Receipt may run twice at once (idempotent): a worker optimising at the
// aggressive level hedges its stragglers.
//
//qflow:step depends=Charge idempotent
func Receipt(ctx context.Context, charge string) (string, error) { return charge + ".pdf", nil }

// Audit waits behind everything else (a negative priority).
//
//qflow:step depends=Charge priority=-5 retries=1
func Audit(ctx context.Context, o Order, charge string) error { return nil }
