package p

import (
	"context"
	"io"
	"time"
)

//qflow:flow f
type In struct {
	Done chan struct{}
}

type Result struct {
	Name string
	Cb   func() error
}

type hidden struct{ n int }

//qflow:step
func A(ctx context.Context) (complex128, error) { return 0, nil }

//qflow:step
func B(ctx context.Context) (Result, error) { return Result{}, nil }

//qflow:step
func C(ctx context.Context) (map[[2]int]string, error) { return nil, nil }

//qflow:step
func D(ctx context.Context) (io.Reader, error) { return nil, nil }

//qflow:step
func E(ctx context.Context) (hidden, error) { return hidden{}, nil }

// Order has one field encoding/json would drop and one it is told to.
type Order struct {
	ID    string
	total int
	cache map[string]int `json:"-"`
	Lines []Line
	At    time.Time // other packages' unexported fields are theirs
}

type Line struct {
	SKU string
	qty int
}

//qflow:step
func F(ctx context.Context) (Order, error) { return Order{}, nil }

//qflow:step
func G(ctx context.Context) ([]*Order, error) { return nil, nil }
