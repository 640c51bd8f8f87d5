package p

import "context"

//qflow:flow f priority=3
type In struct{ N int }

//qflow:step priority=high
func A(ctx context.Context) (int, error) { return 0, nil }

//qflow:step priority=2147483648 name=b
func B(ctx context.Context) (int, error) { return 0, nil }

//qflow:step priority=-2147483649
func C(ctx context.Context) (int, error) { return 0, nil }

//qflow:step priority=1.5
func D(ctx context.Context) (int, error) { return 0, nil }

//qflow:step priority=2147483647
func E(ctx context.Context) (int, error) { return 0, nil }
