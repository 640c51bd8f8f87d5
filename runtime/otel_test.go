package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	qflow "github.com/quantumflow/qflow/runtime"
)

// otelFlow maps over its input (a negative element fails for good) and sums.
func otelFlow() (qflow.FlowDef, map[string]qflow.Handler) {
	def := qflow.FlowDef{Slug: "traced", Steps: []qflow.StepDef{
		{Slug: "square", Map: true, Options: qflow.StepOptions{Retries: 1}},
		{Slug: "sum", DependsOn: []string{"square"}},
	}}
	return def, map[string]qflow.Handler{
		"square": qflow.HandlerFunc(func(_ context.Context, n int) (int, error) {
			if n < 0 {
				return 0, qflow.Permanent(fmt.Errorf("negative element %d", n))
			}
			return n * n, nil
		}),
		"sum": qflow.HandlerFunc(func(_ context.Context, in struct{ Square []int }) (int, error) {
			s := 0
			for _, v := range in.Square {
				s += v
			}
			return s, nil
		}),
	}
}

func newTracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

func attrOf(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// TestOtelTraceParentAcrossProcesses: the worker has its own tracer
// provider (as another process would); the trace context reaches it
// through the database only.
func TestOtelTraceParentAcrossProcesses(t *testing.T) {
	e := newEnv(t)
	callerTP, _ := newTracer(t)
	workerTP, workerSpans := newTracer(t)
	def, h := otelFlow()
	e.startWorker(def, h, &qflow.WorkerOptions{TracerProvider: workerTP})

	ctx := ctxT(t, 30*time.Second)
	pctx, parent := callerTP.Tracer("test").Start(ctx, "caller")
	run, err := e.client.StartFlow(pctx, def, []int{2, 3}, nil) // this client has no tracer
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	bad, err := e.client.StartFlow(pctx, def, []int{1, -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Wait(ctx); !errors.Is(err, qflow.ErrRunFailed) {
		t.Fatalf("run with a negative element: %v, want ErrRunFailed", err)
	}

	want := parent.SpanContext()
	seen := map[string]int{}
	var failed int
	for _, s := range workerSpans.GetSpans() {
		if s.Parent.TraceID() != want.TraceID() || s.Parent.SpanID() != want.SpanID() || !s.Parent.IsRemote() {
			t.Errorf("span %q: parent %v, want the caller's span %v (remote)", s.Name, s.Parent, want)
		}
		if s.SpanKind != trace.SpanKindConsumer {
			t.Errorf("span %q: kind %v, want consumer", s.Name, s.SpanKind)
		}
		for _, k := range []string{"qflow.flow", "qflow.step", "qflow.task.index", "qflow.task.attempt", "qflow.run.id"} {
			if _, ok := attrOf(s, k); !ok {
				t.Errorf("span %q has no attribute %s: %v", s.Name, k, s.Attributes)
			}
		}
		seen[s.Name]++
		if s.Status.Code == codes.Error {
			failed++
			if len(s.Events) == 0 || s.Events[0].Name != "exception" {
				t.Errorf("failed span %q records no exception event: %v", s.Name, s.Events)
			}
			if v, _ := attrOf(s, "qflow.run.id"); v.AsString() != bad.ID.String() {
				t.Errorf("failed span %q belongs to run %s, want %s", s.Name, v.AsString(), bad.ID)
			}
		}
	}
	// Run 1: 2 squares and a sum; run 2: 2 squares (one fails, permanently).
	if seen["qflow.task traced/square"] != 4 || seen["qflow.task traced/sum"] != 1 || failed != 1 {
		t.Fatalf("task spans %v with %d failed; want 4 square, 1 sum, 1 failed", seen, failed)
	}
}

// TestOtelTraceClientSpans: a client with a tracer records the start and
// the wait; the start span is the parent of the task spans.
func TestOtelTraceClientSpans(t *testing.T) {
	db := newEnv(t).db
	tp, spans := newTracer(t)
	client := qflow.NewClient(db.Pool, &qflow.ClientOptions{Logger: quiet(), TracerProvider: tp})
	t.Cleanup(client.Close)
	e := &env{t: t, db: db, client: client}
	def, h := otelFlow()
	e.startWorker(def, h, &qflow.WorkerOptions{TracerProvider: tp})

	ctx := ctxT(t, 30*time.Second)
	pctx, parent := tp.Tracer("test").Start(ctx, "caller")
	run, err := client.StartFlow(pctx, def, []int{4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run.Wait(pctx); err != nil {
		t.Fatal(err)
	}
	parent.End()

	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans.GetSpans() {
		byName[s.Name] = append(byName[s.Name], s)
	}
	start, wait, tasks := byName["qflow.start traced"], byName["qflow.wait"], byName["qflow.task traced/square"]
	if len(start) != 1 || len(wait) != 1 || len(tasks) != 1 || len(byName["qflow.task traced/sum"]) != 1 {
		t.Fatalf("spans %v: want one start, one wait and one per task", byName)
	}
	if start[0].Parent.SpanID() != parent.SpanContext().SpanID() || wait[0].Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("start and wait spans are not children of the caller's span")
	}
	if tasks[0].Parent.SpanID() != start[0].SpanContext.SpanID() || tasks[0].SpanContext.TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("task span's parent %v, want the start span %v", tasks[0].Parent, start[0].SpanContext)
	}
	if v, _ := attrOf(start[0], "qflow.run.id"); v.AsString() != run.ID.String() {
		t.Errorf("start span's run id %q, want %s", v.AsString(), run.ID)
	}
	if v, _ := attrOf(wait[0], "qflow.run.status"); v.AsString() != qflow.StatusCompleted {
		t.Errorf("wait span's run status %q, want completed", v.AsString())
	}
}

// TestOtelMetrics counts tasks, durations, queue depth and the tasks a
// heartbeat stopped.
func TestOtelMetrics(t *testing.T) {
	e := newEnv(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	def, h := otelFlow()
	e.startWorker(def, h, &qflow.WorkerOptions{MeterProvider: mp, Lease: 900 * time.Millisecond})
	blocked := qflow.FlowDef{Slug: "blocked", Steps: []qflow.StepDef{{Slug: "wait"}}}
	var running atomic.Bool
	e.startWorker(blocked, map[string]qflow.Handler{
		"wait": qflow.HandlerFunc(func(ctx context.Context, _ any) (int, error) {
			running.Store(true)
			<-ctx.Done()
			return 0, ctx.Err()
		}),
	}, &qflow.WorkerOptions{MeterProvider: mp, Lease: 900 * time.Millisecond})

	ctx := ctxT(t, 30*time.Second)
	for _, in := range [][]int{{1, 2, 3}, {5, -5}} {
		run, err := e.client.StartFlow(ctx, def, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = run.Wait(ctx)
	}
	stuck, err := e.client.StartFlow(ctx, blocked, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for !running.Load() && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if err := stuck.Cancel(ctx); err != nil {
		t.Fatal(err)
	}

	sums := func() (map[string]int64, map[string]uint64, bool) {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		counts, hist, depth := map[string]int64{}, map[string]uint64{}, false
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					for _, p := range d.DataPoints {
						counts[m.Name] += p.Value
					}
				case metricdata.Histogram[float64]:
					for _, p := range d.DataPoints {
						hist[m.Name] += p.Count
					}
				case metricdata.Gauge[int64]:
					for _, p := range d.DataPoints {
						if v, _ := p.Attributes.Value("qflow.flow"); v.AsString() == "traced" && m.Name == "qflow.queue.depth" {
							depth = true
						}
					}
				}
			}
		}
		return counts, hist, depth
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		counts, hist, depth := sums()
		// 3 squares + 1 sum, 2 squares (one failed), 1 task stopped by
		// the heartbeat after its run was cancelled (neither completed nor failed).
		want := map[string]int64{"qflow.task.started": 7, "qflow.task.completed": 5, "qflow.task.failed": 1, "qflow.task.lease_expiries": 1}
		ok := depth && hist["qflow.task.duration"] == 6
		for k, v := range want {
			ok = ok && counts[k] == v
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: counters %v, histogram counts %v, queue depth observed %v; want counters %v, 6 durations, a depth", counts, hist, depth, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
