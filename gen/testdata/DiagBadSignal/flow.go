package p

import "context"

//qflow:flow a
type A struct{ N int }

type Other struct{ X int }

//qflow:step
func First(ctx context.Context) ([]int, error) { return nil, nil }

//qflow:step depends=First wait=Approval wait_timeout=soon
func BadName(ctx context.Context, xs []int, p string) error { return nil }

//qflow:step depends=First wait_timeout=1h
func NoWait(ctx context.Context, xs []int) error { return nil }

//qflow:step wait=go
func NoPayload(ctx context.Context) error { return nil }

//qflow:step depends=First map wait=go
func Each(ctx context.Context, x int) error { return nil }

//qflow:step depends=First wait=ok
func TakesA(ctx context.Context, xs []int, p string) error { return nil }

//qflow:step depends=First wait=ok
func TakesB(ctx context.Context, xs []int, p Other) error { return nil }

//qflow:step depends=First wait=ch
func BadPayload(ctx context.Context, xs []int, p chan int) error { return nil }
