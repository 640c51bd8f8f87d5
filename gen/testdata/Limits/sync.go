package sync

import "context"

// Batch is a run's input. At most 20 tasks of the whole flow run at once
// across all workers (concurrency=20 on the flow).
//
//qflow:flow sync concurrency=20
type Batch struct {
	Region    string
	Customers []Customer
}

// Customer is one element of List's output.
type Customer struct {
	Meta
	ID    string  `json:"id"`
	Owner *Person `json:"owner,omitempty"`
}

// Meta is embedded without a JSON name: its fields are Customer's.
type Meta struct {
	Zone Zone `json:"zone"`
}

// Zone is a string type: it can be a key.
type Zone string

// Person owns customers.
type Person struct{ Email string }

// Audit is what a sync reports.
type Audit struct{ Changed int }

//qflow:step
func List(ctx context.Context, b Batch) ([]Customer, error) { return b.Customers, nil }

// Sync runs once per customer, at most one per customer at a time, and
// starts at most 50 a second (10 at once) across all workers.
//
//qflow:step depends=List map concurrency=1 key=ID rate=50/s burst=10
func Sync(ctx context.Context, c Customer) (Audit, error) { return Audit{}, nil }

// Notify mails each customer's owner, at most 5 every 10 seconds each.
//
//qflow:step depends=List map rate=5/10s key=Owner.Email
func Notify(ctx context.Context, c Customer) error { return nil }

// Archive runs at most 3 at once per zone (a field of embedded Meta).
//
//qflow:step depends=List map concurrency=3 key=Zone
func Archive(ctx context.Context, c Customer) error { return nil }

// Report runs at most twice at once per region of the flow input.
//
//qflow:step depends=Sync concurrency=2 key=b.Region
func Report(ctx context.Context, b Batch, audits []Audit) (string, error) { return b.Region, nil }

//qflow:step
func Regions(ctx context.Context, b Batch) ([]string, error) { return []string{b.Region}, nil }

// Cleanup maps over region names: the element itself is the key.
//
//qflow:step depends=Regions map concurrency=1 key=region rate=1/h
func Cleanup(ctx context.Context, region string) error { return nil }
