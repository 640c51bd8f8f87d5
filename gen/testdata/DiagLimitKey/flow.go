package p

import (
	"context"
	"time"
)

//qflow:flow f
type In struct {
	ID     string
	N      int
	Tags   []string
	Hidden string `json:"-"`
	When   time.Time
	Who    Person
}

// Person is part of the input.
type Person struct{ Name string }

// Key is a method: keys are read from JSON, where methods are not.
func (in In) Key() string { return in.ID }

//qflow:step concurrency=2 key=CustomerID
func A(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=2 key=Id
func B(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=2 key=N
func C(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=2 key=Key
func D(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=2 key=Hidden
func E(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=2 key=Tags.First
func F(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=2 key=When.Year rate=1/s
func G(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=2 key=ID
func H(ctx context.Context) error { return nil }

//qflow:step depends=A concurrency=2 key=Who
func I(ctx context.Context, in In, a int) error { return nil }
