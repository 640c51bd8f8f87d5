package p

import "context"

//qflow:flow f
type In struct{ N int }

type Service struct{}

//qflow:step
func (s *Service) Fetch(ctx context.Context) (int, error) { return 0, nil }

//qflow:step
func Ok(ctx context.Context) (int, error) { return 0, nil }
