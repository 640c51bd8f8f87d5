package p

import "context"

//qflow:flow f
type In struct{ N int }

// FOutput is also the name of the generated output struct.
type FOutput struct{}

func RunF() {}

//qflow:step name=run
func Run(ctx context.Context) (int, error) { return 0, nil }
