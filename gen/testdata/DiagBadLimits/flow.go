package p

import "context"

// A flow may cap its tasks (concurrency=N) but not pace them.
//
//qflow:flow f rate=5/s
type In struct{ ID string }

//qflow:step concurrency=0
func A(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step rate=fast
func B(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=10001
func C(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step rate=5/d burst=0
func D(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step key=ID
func E(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step burst=3
func F(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=two
func G(ctx context.Context, in In) (int, error) { return 0, nil }

//qflow:step concurrency=1 key=customer-id
func H(ctx context.Context, in In) (int, error) { return 0, nil }
