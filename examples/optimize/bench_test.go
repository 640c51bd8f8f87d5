package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/quantumflow/qflow/internal/pgtest"
)

var benchScale = flag.Float64("scale", 1, "BenchmarkOptimize: multiply every step duration by this")

// BenchmarkOptimize measures each scenario at each of its levels, after
// the scenario's learning runs at level off (not timed), on one fresh
// database per scenario. ms/run is the median run time (the engine's
// finished_at − started_at); stragglers also reports hedges/run. Each
// iteration is one run, so give a count:
//
//	go test ./examples/optimize -run '^$' -bench . -benchtime 5x
//	go test ./examples/optimize -run '^$' -bench 'Optimize/critical' -benchtime 1x -scale 0.1
func BenchmarkOptimize(b *testing.B) {
	for _, sc := range scenarios(*benchScale) {
		b.Run(sc.name, func(b *testing.B) {
			db := pgtest.New(b)
			l := newLab(db.Pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
			b.Cleanup(l.close)
			for _, level := range sc.levels {
				b.Run(level.String(), func(b *testing.B) {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
					defer cancel()
					b.StopTimer()
					if err := l.ensureLearned(ctx, sc); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					m, err := l.measure(ctx, sc, level, b.N)
					if err != nil {
						b.Fatal(err)
					}
					med, _, _, _ := m.stats()
					b.ReportMetric(med, "ms/run")
					if sc.name == "stragglers" {
						b.ReportMetric(float64(m.calls-int64(12*b.N))/float64(b.N), "hedges/run")
					}
				})
			}
		})
	}
}
