package p

import (
	"context"
	"io"
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
