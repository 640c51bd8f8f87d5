package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

// fanOut is W3: a step returns p.fan items, a map step runs once per item,
// an aggregate step sums the map's outputs.
func fanOut(ctx context.Context, c config, p params, pool *pgxpool.Pool, ev bool) (map[string]float64, error) {
	def, err := qflow.NewFlow("bench_fan").
		Step("items", qflow.StepDef{TakesInput: true}).
		Step("each", qflow.StepDef{DependsOn: []string{"items"}, Map: true}).
		Step("total", qflow.StepDef{DependsOn: []string{"each"}}).
		Build()
	if err != nil {
		return nil, err
	}
	h := map[string]qflow.Handler{
		"items": func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			items := make([]int, p.fan)
			for i := range items {
				items[i] = i
			}
			return json.Marshal(items)
		},
		"each": func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			var n int
			if err := json.Unmarshal(t.Input, &n); err != nil {
				return nil, err
			}
			return json.RawMessage(strconv.Itoa(2 * n)), nil
		},
		"total": func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			var in struct{ Each []int }
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, err
			}
			sum := 0
			for _, v := range in.Each {
				sum += v
			}
			return json.RawMessage(strconv.Itoa(sum)), nil
		},
	}
	client := qflow.NewClient(pool, &qflow.ClientOptions{Logger: quiet, DisableEvents: !ev, TracerProvider: otelTP, MeterProvider: otelMP})
	defer client.Close()
	if _, err := client.DefineFlow(ctx, def); err != nil {
		return nil, err
	}
	stop, err := startWorker(c, pool, ev, def, h)
	if err != nil {
		return nil, err
	}
	defer stop()
	time.Sleep(200 * time.Millisecond)
	began := time.Now()
	if _, err := client.StartRun(ctx, def.Slug, 0, nil); err != nil {
		return nil, err
	}
	if err := waitAll(ctx, pool, def.Slug, 1); err != nil {
		return nil, err
	}
	var out struct{ Total int }
	var raw []byte
	if err := pool.QueryRow(ctx, `SELECT output FROM qflow.runs`).Scan(&raw); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Total != p.fan*(p.fan-1) {
		return nil, fmt.Errorf("W3 output %s, want total %d (%v)", raw, p.fan*(p.fan-1), err)
	}
	d := time.Since(began).Seconds()
	return map[string]float64{"fan": float64(p.fan), "seconds": d, "tasks_per_s": float64(p.fan+2) / d}, nil
}
