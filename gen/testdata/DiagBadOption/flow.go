package p

import "context"

//qflow:flow f retries=0 timeout=soon color=red
type In struct{ N int }

//qflow:step retries=lots timeout=soon backoff=-1s delay=later
func A(ctx context.Context) (int, error) { return 0, nil }
