package bad

import "context"

//qflow:flow child
type In struct{ N int }

//qflow:step flow=child
func Work(ctx context.Context, in In) (int, error) { return in.N, nil }

//qflow:flow parent
type Start struct{ S string }

//qflow:step flow=parent
func Root(ctx context.Context, s Start) (In, error) { return In{}, nil }

//qflow:step flow=parent depends=Root subflow=chidl
func Unknown(ctx context.Context, in In) (ChildOutput, error) { return ChildOutput{}, nil }

//qflow:step flow=parent depends=Root subflow=parent
func Self(ctx context.Context, in In) (ChildOutput, error) { return ChildOutput{}, nil }

//qflow:step flow=parent subflow=child
func WrongParam(ctx context.Context, s Start) (ChildOutput, error) { return ChildOutput{}, nil }

type Other struct {
	Work string `json:"work"`
}

//qflow:step flow=parent depends=Root subflow=child
func WrongResult(ctx context.Context, in In) (Other, error) { return Other{}, nil }

//qflow:step flow=parent depends=Root subflow=child
func NoResult(ctx context.Context, in In) error { return nil }

//qflow:step flow=parent depends=Root,NoResult subflow=child
func TwoDeps(ctx context.Context, in In) (ChildOutput, error) { return ChildOutput{}, nil }

//qflow:step flow=parent depends=Root subflow=child wait=go
func Waits(ctx context.Context, in In, ok bool) (ChildOutput, error) { return ChildOutput{}, nil }

//qflow:step flow=parent depends=Root subflow=Child
func BadName(ctx context.Context, in In) (Other, error) { return Other{}, nil }
