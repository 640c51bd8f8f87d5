// Command qflowbench measures the QuantumFlow engine on a local PostgreSQL
// server, next to that server's own floor (pgbench), with the workloads of
// docs/benchmarks.md:
//
//	w0   pgbench -N -c 8 -j 2 -T 20 (TPS) and -c 1 (commit latency), scratch database
//	w1   2,000 runs of a 3-step chain a→b→c, started one per call from 8 goroutines
//	     while one worker with 8 slots runs them: runs/s and tasks/s
//	w1b  the same runs started with one StartRuns call
//	w2   200 sequential runs (start, wait, next) after 5 warm-ups: p50/p95/p99
//	w3   one run: a step returns 10,000 items, a map step over them, an aggregate step
//
// Every workload runs in a database of its own, created and dropped here.
// The server is DATABASE_URL, else postgres://root@127.0.0.1:5432/postgres.
//
// Usage:
//
//	go run ./cmd/qflowbench [-workloads w0,w1,w1b,w2,w3] [-reps 3] [-events on|off|both] [-otel] [-json FILE]
//
// It prints a table of medians and writes every measurement as JSON (default
// qflowbench.json). Flags -runs, -seqruns, -fan, -slots and -batch change the
// workload sizes and the worker.
//
// -otel gives every client and worker an OpenTelemetry SDK TracerProvider
// (every span sampled, through a batch span processor) and MeterProvider
// (a periodic reader every 5s): the full cost of recording, with exporters
// that discard what they are given, so no collector is needed and the
// result measures the engine and the SDK, not a network.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	qflow "github.com/quantumflow/qflow/runtime"
)

type config struct {
	url       string
	workloads []string
	reps      int
	events    []bool
	runs      int
	seqRuns   int
	fan       int
	slots     int
	batch     int
	pgbenchT  int
}

// Result is one measurement.
type Result struct {
	Workload string             `json:"workload"`
	Events   *bool              `json:"events,omitempty"`
	Otel     bool               `json:"otel,omitempty"`
	Rep      int                `json:"rep"`
	Metrics  map[string]float64 `json:"metrics"`
	At       time.Time          `json:"at"`
}

func main() {
	var c config
	var workloads, events, out string
	flag.StringVar(&c.url, "url", cmp.Or(os.Getenv("DATABASE_URL"), "postgres://root@127.0.0.1:5432/postgres?sslmode=disable"), "server (maintenance database) URL")
	flag.StringVar(&workloads, "workloads", "w0,w1,w1b,w2,w3", "comma-separated workloads")
	flag.IntVar(&c.reps, "reps", 1, "repetitions of each workload")
	flag.StringVar(&events, "events", "on", "engine events: on, off or both")
	flag.StringVar(&out, "json", "qflowbench.json", "write results as JSON here (empty: do not)")
	flag.IntVar(&c.runs, "runs", 2000, "W1/W1b: runs")
	flag.IntVar(&c.seqRuns, "seqruns", 200, "W2: sequential runs")
	flag.IntVar(&c.fan, "fan", 10000, "W3: map elements")
	flag.IntVar(&c.slots, "slots", 8, "worker slots (WorkerOptions.Concurrency)")
	flag.IntVar(&c.batch, "batch", 32, "worker claim batch (WorkerOptions.BatchSize)")
	flag.IntVar(&c.pgbenchT, "pgbench-seconds", 20, "W0: pgbench -T for the 8-client run")
	withOtel := flag.Bool("otel", false, "record OpenTelemetry spans and metrics with the SDK (exporters discard them)")
	flag.Parse()
	if *withOtel {
		shutdown := installOtel()
		defer shutdown()
	}
	c.workloads = strings.Split(workloads, ",")
	switch events {
	case "on":
		c.events = []bool{true}
	case "off":
		c.events = []bool{false}
	case "both":
		c.events = []bool{true, false}
	default:
		fmt.Fprintln(os.Stderr, "qflowbench: -events must be on, off or both")
		os.Exit(2)
	}
	results, err := run(context.Background(), c, os.Stderr)
	if len(results) > 0 {
		printTable(os.Stdout, results)
		if out != "" {
			b, _ := json.MarshalIndent(results, "", "  ")
			if werr := os.WriteFile(out, append(b, '\n'), 0o644); werr != nil && err == nil {
				err = werr
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "qflowbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, log io.Writer) ([]Result, error) {
	var results []Result
	for rep := 1; rep <= c.reps; rep++ {
		for _, w := range c.workloads {
			if w == "w0" {
				m, err := pgbench(ctx, c)
				if err != nil {
					return results, fmt.Errorf("w0: %w", err)
				}
				results = append(results, Result{Workload: w, Otel: otelTP != nil, Rep: rep, Metrics: m, At: time.Now().UTC()})
				fmt.Fprintf(log, "rep %d %s %v\n", rep, w, m)
				continue
			}
			for _, ev := range c.events {
				m, err := withDatabase(ctx, c.url, func(pool *pgxpool.Pool) (map[string]float64, error) {
					switch w {
					case "w1":
						return chain(ctx, c, pool, ev, false)
					case "w1b":
						return chain(ctx, c, pool, ev, true)
					case "w2":
						return sequential(ctx, c, pool, ev)
					case "w3":
						return fanOut(ctx, c, pool, ev)
					}
					return nil, fmt.Errorf("unknown workload %q", w)
				})
				if err != nil {
					return results, fmt.Errorf("%s: %w", w, err)
				}
				results = append(results, Result{Workload: w, Events: &ev, Otel: otelTP != nil, Rep: rep, Metrics: m, At: time.Now().UTC()})
				fmt.Fprintf(log, "rep %d %s events=%v %v\n", rep, w, ev, m)
			}
		}
	}
	return results, nil
}

// withDatabase runs f on a new, migrated database and drops it afterwards.
func withDatabase(ctx context.Context, url string, f func(*pgxpool.Pool) (map[string]float64, error)) (map[string]float64, error) {
	name := fmt.Sprintf("qflowbench_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.Background())
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return nil, err
	}
	defer admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Database = name
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := qflow.NewClient(pool, nil).Migrate(ctx); err != nil {
		return nil, err
	}
	return f(pool)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func chainFlow() (qflow.FlowDef, map[string]qflow.Handler) {
	def, err := qflow.NewFlow("bench_chain").
		Step("a", qflow.StepDef{TakesInput: true}).
		Step("b", qflow.StepDef{DependsOn: []string{"a"}}).
		Step("c", qflow.StepDef{DependsOn: []string{"b"}}).
		Build()
	if err != nil {
		panic(err)
	}
	// a returns the run's input; b and c add one to their dependency's output.
	next := func(dep string) qflow.Handler {
		return func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			var in map[string]int
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, err
			}
			return json.RawMessage(strconv.Itoa(in[dep] + 1)), nil
		}
	}
	return def, map[string]qflow.Handler{"a": next("run"), "b": next("a"), "c": next("b")}
}

// startWorker runs a worker on pool until the returned stop is called.
func startWorker(c config, pool *pgxpool.Pool, ev bool, def qflow.FlowDef, h map[string]qflow.Handler) (stop func(), err error) {
	w := qflow.NewWorker(pool, &qflow.WorkerOptions{Concurrency: c.slots, BatchSize: c.batch, Logger: quiet, DisableEvents: !ev, TracerProvider: otelTP, MeterProvider: otelMP})
	if err := w.Register(def, h); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() { cancel(); <-done }, nil
}

// waitAll waits until no run of the database is started any more and
// checks that all completed.
func waitAll(ctx context.Context, pool *pgxpool.Pool, want int) error {
	for {
		var started, completed int
		if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'started'), count(*) FILTER (WHERE status = 'completed') FROM qflow.runs`).Scan(&started, &completed); err != nil {
			return err
		}
		if started == 0 {
			if completed != want {
				return fmt.Errorf("%d runs completed, want %d", completed, want)
			}
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// chain is W1 (runs started one per call from 8 goroutines) and W1b (one StartRuns call).
func chain(ctx context.Context, c config, pool *pgxpool.Pool, ev, batch bool) (map[string]float64, error) {
	def, h := chainFlow()
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
	time.Sleep(200 * time.Millisecond) // the worker is listening
	began := time.Now()
	if batch {
		inputs := make([]any, c.runs)
		for i := range inputs {
			inputs[i] = i
		}
		if _, err := client.StartRuns(ctx, def.Slug, inputs, nil); err != nil {
			return nil, err
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(c.runs); i = next.Add(1) {
					if _, err := client.StartRun(ctx, def.Slug, i, nil); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return nil, err
		}
	}
	startedIn := time.Since(began)
	if err := waitAll(ctx, pool, c.runs); err != nil {
		return nil, err
	}
	d := time.Since(began).Seconds()
	return map[string]float64{
		"seconds": d, "runs_per_s": float64(c.runs) / d, "tasks_per_s": float64(3*c.runs) / d,
		"start_seconds": startedIn.Seconds(),
	}, nil
}

// sequential is W2: one run at a time, start to result.
func sequential(ctx context.Context, c config, pool *pgxpool.Pool, ev bool) (map[string]float64, error) {
	def, h := chainFlow()
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
	var lat []float64
	for i := range c.seqRuns + 5 {
		began := time.Now()
		id, err := client.StartRun(ctx, def.Slug, i, nil)
		if err != nil {
			return nil, err
		}
		if ev {
			_, err = client.WaitRun(ctx, id)
		} else {
			err = pollRun(ctx, pool, id) // WaitRun falls back to a slow timer without events
		}
		if err != nil {
			return nil, err
		}
		if i >= 5 {
			lat = append(lat, float64(time.Since(began).Microseconds())/1000)
		}
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return map[string]float64{"p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": lat[len(lat)-1]}, nil
}

func pollRun(ctx context.Context, pool *pgxpool.Pool, id uuid.UUID) error {
	for {
		var status string
		if err := pool.QueryRow(ctx, `SELECT status FROM qflow.runs WHERE id = $1`, id).Scan(&status); err != nil {
			return err
		}
		switch status {
		case "completed":
			return nil
		case "started":
			time.Sleep(500 * time.Microsecond)
		default:
			return fmt.Errorf("run %s %s", id, status)
		}
	}
}

// fanOut is W3: a step returns c.fan items, a map step runs once per item,
// an aggregate step sums the map's outputs.
func fanOut(ctx context.Context, c config, pool *pgxpool.Pool, ev bool) (map[string]float64, error) {
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
			items := make([]int, c.fan)
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
	if err := waitAll(ctx, pool, 1); err != nil {
		return nil, err
	}
	var out struct{ Total int }
	var raw []byte
	if err := pool.QueryRow(ctx, `SELECT output FROM qflow.runs`).Scan(&raw); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Total != c.fan*(c.fan-1) {
		return nil, fmt.Errorf("W3 output %s, want total %d (%v)", raw, c.fan*(c.fan-1), err)
	}
	d := time.Since(began).Seconds()
	return map[string]float64{"seconds": d, "tasks_per_s": float64(c.fan+2) / d}, nil
}

// pgbench is W0: the server's floor for a small write transaction.
func pgbench(ctx context.Context, c config) (map[string]float64, error) {
	cfg, err := pgx.ParseConfig(c.url)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	_, err = withDatabase(ctx, c.url, func(pool *pgxpool.Pool) (map[string]float64, error) {
		db := pool.Config().ConnConfig.Database
		env := append(os.Environ(), "PGHOST="+cfg.Host, "PGPORT="+strconv.Itoa(int(cfg.Port)), "PGUSER="+cfg.User)
		if cfg.Password != "" {
			env = append(env, "PGPASSWORD="+cfg.Password)
		}
		sh := func(args ...string) (string, error) {
			cmd := exec.CommandContext(ctx, "pgbench", append(args, db)...)
			cmd.Env = env
			b, err := cmd.CombinedOutput()
			if err != nil {
				return "", fmt.Errorf("pgbench %v: %v\n%s", args, err, b)
			}
			return string(b), nil
		}
		if _, err := sh("-i", "-q"); err != nil {
			return nil, err
		}
		o, err := sh("-N", "-c", "8", "-j", "2", "-T", strconv.Itoa(c.pgbenchT))
		if err != nil {
			return nil, err
		}
		m["tps_c8"] = grab(o, `tps = ([\d.]+)`)
		m["latency_ms_c8"] = grab(o, `latency average = ([\d.]+) ms`)
		if o, err = sh("-N", "-c", "1", "-T", "10"); err != nil {
			return nil, err
		}
		m["tps_c1"] = grab(o, `tps = ([\d.]+)`)
		m["latency_ms_c1"] = grab(o, `latency average = ([\d.]+) ms`)
		return m, nil
	})
	return m, err
}

func grab(s, re string) float64 {
	if m := regexp.MustCompile(re).FindStringSubmatch(s); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	return 0
}

// printTable prints the median of each metric per workload and events setting.
func printTable(w io.Writer, results []Result) {
	type key struct {
		workload string
		events   string
	}
	var keys []key
	vals := map[key]map[string][]float64{}
	for _, r := range results {
		k := key{r.Workload, "-"}
		if r.Events != nil {
			k.events = map[bool]string{true: "on", false: "off"}[*r.Events]
		}
		if vals[k] == nil {
			vals[k] = map[string][]float64{}
			keys = append(keys, k)
		}
		for n, v := range r.Metrics {
			vals[k][n] = append(vals[k][n], v)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tevents\treps\tmedians")
	for _, k := range keys {
		var names []string
		for n := range vals[k] {
			names = append(names, n)
		}
		slices.Sort(names)
		var parts []string
		reps := 0
		for _, n := range names {
			v := slices.Clone(vals[k][n])
			slices.Sort(v)
			reps = len(v)
			parts = append(parts, fmt.Sprintf("%s=%.4g", n, v[len(v)/2]))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", k.workload, k.events, reps, strings.Join(parts, "  "))
	}
	tw.Flush()
}

// The providers -otel installs; nil without it.
var (
	otelTP trace.TracerProvider
	otelMP metric.MeterProvider
)

// installOtel sets otelTP and otelMP to SDK providers whose exporters
// discard what they get, and returns their shutdown.
func installOtel() (shutdown func()) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(discardSpans{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(
		sdkmetric.NewPeriodicReader(discardMetrics{}, sdkmetric.WithInterval(5*time.Second))))
	otelTP, otelMP = tp, mp
	return func() {
		ctx := context.Background()
		_ = tp.Shutdown(ctx)
		_ = mp.Shutdown(ctx)
	}
}

// discardSpans is a span exporter that drops every span.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// discardMetrics is a metric exporter that drops every collection.
type discardMetrics struct{}

func (discardMetrics) Temporality(k sdkmetric.InstrumentKind) metricdata.Temporality {
	return sdkmetric.DefaultTemporalitySelector(k)
}

func (discardMetrics) Aggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	return sdkmetric.DefaultAggregationSelector(k)
}

func (discardMetrics) Export(context.Context, *metricdata.ResourceMetrics) error { return nil }
func (discardMetrics) ForceFlush(context.Context) error                          { return nil }
func (discardMetrics) Shutdown(context.Context) error                            { return nil }
