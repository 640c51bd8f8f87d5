package p

import "context"

//qflow:flow f
type In struct{ N int }

type Out struct{ V int }

//qflow:step
func A(ctx context.Context, in In) (Out, error) { return Out{}, nil }

//qflow:step depends=A when=IsBg
func B(ctx context.Context, in In, a Out) (int, error) { return 0, nil }

func IsBig(in In, a Out) bool { return a.V > 10 }

//qflow:step depends=A when=Limit
func C(ctx context.Context, a Out) (int, error) { return 0, nil }

var Limit = 3

//qflow:step depends=A when=WithCtx
func D(ctx context.Context, a Out) (int, error) { return 0, nil }

func WithCtx(ctx context.Context, a Out) bool { return true }

//qflow:step depends=A when=Swapped
func E(ctx context.Context, in In, a *Out) (int, error) { return 0, nil }

func Swapped(in In, a Out) bool { return true }

//qflow:step depends=A when=Fallible
func F(ctx context.Context, a Out) (int, error) { return 0, nil }

func Fallible(a Out) (bool, error) { return true, nil }

//qflow:step depends=A when=NoResult
func G(ctx context.Context, a Out) (int, error) { return 0, nil }

func NoResult(a Out) {}

//qflow:step when=pkg.Cond optional=yes
func H(ctx context.Context) (int, error) { return 0, nil }

//qflow:step when=Gen
func I(ctx context.Context) (int, error) { return 0, nil }

func Gen[T any]() bool { return true }

//qflow:step
func List(ctx context.Context) ([]int, error) { return nil, nil }

//qflow:step depends=List map when=Positive
func Each(ctx context.Context, n int) (int, error) { return n, nil }

func Positive(n int) bool { return n > 0 }
