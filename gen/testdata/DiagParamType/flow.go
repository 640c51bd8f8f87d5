package p

import "context"

//qflow:flow f
type In struct{ N int }

type Record struct{ Line string }
type Row struct{ Fields []string }

//qflow:step
func Extract(ctx context.Context, in In) ([]Record, error) { return nil, nil }

//qflow:step depends=Extract map
func Clean(ctx context.Context, r Record) (Row, error) { return Row{}, nil }

//qflow:step depends=Clean,Extract
func Load(ctx context.Context, rows Row, recs []*Record) (int, error) { return 0, nil }

//qflow:step depends=Extract map
func Check(ctx context.Context, r *Record) (bool, error) { return true, nil }
