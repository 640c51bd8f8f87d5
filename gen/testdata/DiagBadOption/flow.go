package p

import "context"

//qflow:flow f retries=-1 timeout=soon color=red
type In struct{ N int }

//qflow:step retries=lots timeout=soon backoff=-1s delay=later
func A(ctx context.Context) (int, error) { return 0, nil }

//qflow:step attempts=0 name=b
func B(ctx context.Context) (int, error) { return 0, nil }

//qflow:step retries=2 attempts=3
func C(ctx context.Context) (int, error) { return 0, nil }
