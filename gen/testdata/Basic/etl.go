// Package etl is the flow of DESIGN.md section 1.
package etl

import (
	"context"
	"strings"
)

//go:generate go run github.com/quantumflow/qflow/cmd/qflowgen

//qflow:flow etl retries=3 backoff=1s timeout=60s
type Input struct{ Source string }

type Record struct{ Line string }

type Row struct{ Fields []string }

type Summary struct {
	Rows  int
	Count int
}

//qflow:step
func Extract(ctx context.Context, in Input) ([]Record, error) {
	var out []Record
	for _, l := range strings.Split(in.Source, "\n") {
		out = append(out, Record{Line: l})
	}
	return out, nil
}

// Clean runs once per record, in parallel.
//
//qflow:step depends=Extract map
func Clean(ctx context.Context, r Record) (Row, error) {
	return Row{Fields: strings.Fields(r.Line)}, nil
}

//qflow:step depends=Extract
func Count(ctx context.Context, recs []Record) (int, error) { return len(recs), nil }

//qflow:step depends=Clean,Count retries=5 timeout=30s
func Load(ctx context.Context, in Input, rows []Row, n int) (Summary, error) {
	return Summary{Rows: len(rows), Count: n}, nil
}
