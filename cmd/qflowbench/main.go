// Command qflowbench measures the QuantumFlow engine on a local PostgreSQL
// server, next to that server's own floor (pgbench), with the workloads of
// docs/benchmarks.md:
//
//	w0    pgbench -N -c 8 -j 2 -T 20 (TPS) and -c 1 (commit latency), scratch database
//	w1    2,000 runs of a 3-step chain a→b→c, started one per call from 8 goroutines
//	      while one worker with 8 slots runs them: runs/s and tasks/s
//	w1b   the same runs started with one StartRuns call
//	w2    200 sequential runs (start, wait, next) after 5 warm-ups: p50/p95/p99
//	w3    one run: a step returns 10,000 items, a map step over them, an aggregate step
//	soak  W1b's chain started at a steady rate (a share of peak throughput) for a
//	      while, with a row of measurements per minute and the engine's table
//	      sizes at the start and the end
//
// Every workload runs in a database of its own, created and dropped here.
// The server is DATABASE_URL, else postgres://root@127.0.0.1:5432/postgres.
//
// Usage:
//
//	go run ./cmd/qflowbench [-workloads w0,w1,w1b,w2,w3] [-reps 3] [-events on|off|both] [-json FILE]
//
// It prints a table of medians and writes every measurement as JSON (default
// qflowbench.json). Flags -seqruns, -slots and -batch change the workload
// sizes and the worker (-batch 0, the default, keeps the worker's own
// default batch).
//
// -otel gives every client and worker an OpenTelemetry SDK TracerProvider
// (every span sampled, through a batch span processor) and MeterProvider
// (a periodic reader every 5s): the full cost of recording, with exporters
// that discard what they are given, so no collector is needed and the
// result measures the engine and the SDK, not a network.
//
// # How cost grows
//
// Some flags take a comma-separated list and measure once per value (and
// per combination); each result names its values in its variant and metrics:
//
//	-fan 1000,10000,100000    W3 at each map size
//	-runs 2000,20000          W1/W1b at each number of runs
//	-procs 1,2,4              W1/W1b with that many worker processes (this binary,
//	                          re-executed) against the one database; the parent only
//	                          starts runs and waits. 0 (the default): one in-process worker.
//	-history 1000000          W1/W1b after that many finished tasks (completed runs of the
//	                          chain, 3 tasks each) are inserted directly and the database
//	                          is vacuumed and analysed; the prefill time is reported.
//	-prune on|both            with -history: Client.Prune deletes that history while the
//	                          runs are measured (both: measure with and without); the
//	                          prune's time and rate are reported.
//	-limit none,step:64       W1/W1b with a limit across workers on the chain: none;
//	                          step:N, Concurrency N on step b; key:N, Concurrency N per
//	                          run on step b (Key: one gate per run); flow:N, the flow's
//	                          Concurrency N; rate:N, Rate N/s with Burst N on step b.
//	                          A limit the workers' slots never reach (step:64 with 8
//	                          slots) measures what the limited claim costs.
//
// -soak 10m runs the soak workload (alone, unless -workloads names others):
// it measures peak W1b throughput with the first -runs value (or takes
// -soak-tps), then starts runs at -soak-rate (0.8) of it in batches every
// 100ms against one in-process worker, and records per minute the completed
// tasks/s, the p99 start→completion latency of the runs finished in that
// minute, this process's RSS and the server's connections to the database;
// at the start and the end, the size of every table and index in schema
// qflow with live and dead tuples.
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
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

type config struct {
	url       string
	workloads []string
	reps      int
	events    []bool
	runs      intList
	seqRuns   int
	fan       intList
	procs     intList
	history   intList
	prune     string   // -prune: off, on or both
	limits    []string // -limit
	slots     int
	batch     int
	chain     time.Duration // WorkerOptions.ChainWindow
	pgbenchT  int
	soak      time.Duration
	soakRate  float64
	soakTPS   float64
}

// intList is a flag holding a comma-separated list of non-negative integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(s string) error {
	var out intList
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(f), "_", ""))
		if err != nil || v < 0 {
			return fmt.Errorf("%q is not a non-negative integer", f)
		}
		out = append(out, v)
	}
	*l = out
	return nil
}

// Result is one measurement.
type Result struct {
	Workload string `json:"workload"`
	// Variant names the sizes of a workload run at several sizes, such as
	// "runs=20000 procs=2"; empty for the defaults.
	Variant string             `json:"variant,omitempty"`
	Events  *bool              `json:"events,omitempty"`
	Rep     int                `json:"rep"`
	Metrics map[string]float64 `json:"metrics"`
	Soak    *SoakReport        `json:"soak,omitempty"`
	Otel    bool               `json:"otel,omitempty"`
	At      time.Time          `json:"at"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == workerChildFlag {
		os.Exit(workerChild(os.Args[2:]))
	}
	c := config{runs: intList{2000}, fan: intList{10000}, procs: intList{0}, history: intList{0}}
	var workloads, events, out string
	flag.StringVar(&c.url, "url", cmp.Or(os.Getenv("DATABASE_URL"), "postgres://root@127.0.0.1:5432/postgres?sslmode=disable"), "server (maintenance database) URL")
	flag.StringVar(&workloads, "workloads", "w0,w1,w1b,w2,w3", "comma-separated workloads (w0, w1, w1b, w2, w3, soak)")
	flag.IntVar(&c.reps, "reps", 1, "repetitions of each workload")
	flag.StringVar(&events, "events", "on", "engine events: on, off or both")
	flag.StringVar(&out, "json", "qflowbench.json", "write results as JSON here (empty: do not)")
	flag.Var(&c.runs, "runs", "W1/W1b: runs (a list measures each)")
	flag.IntVar(&c.seqRuns, "seqruns", 200, "W2: sequential runs")
	flag.Var(&c.fan, "fan", "W3: map elements (a list measures each)")
	flag.Var(&c.procs, "procs", "W1/W1b: worker processes, 0 for one in-process worker (a list measures each)")
	flag.Var(&c.history, "history", "W1/W1b: finished tasks inserted before measuring (a list measures each)")
	flag.StringVar(&c.prune, "prune", "off", "W1/W1b with -history: prune the history (Client.Prune) while measuring: off, on or both")
	limits := flag.String("limit", "none", "W1/W1b: limits across workers on the chain: none, step:N, key:N, flow:N, rate:N (a list measures each)")
	flag.IntVar(&c.slots, "slots", 8, "worker slots (WorkerOptions.Concurrency), per process")
	flag.IntVar(&c.batch, "batch", 0, "worker claim batch (WorkerOptions.BatchSize; 0: the worker's default)")
	flag.DurationVar(&c.chain, "chain", 0, "chains run in process (WorkerOptions.ChainWindow; 0: the worker's default, negative: none)")
	flag.IntVar(&c.pgbenchT, "pgbench-seconds", 20, "W0: pgbench -T for the 8-client run")
	flag.DurationVar(&c.soak, "soak", 0, "run the soak workload for this long (alone unless -workloads is given; default 10m when -workloads names soak)")
	flag.Float64Var(&c.soakRate, "soak-rate", 0.8, "soak: start rate as a share of peak W1b tasks/s")
	flag.Float64Var(&c.soakTPS, "soak-tps", 0, "soak: peak W1b tasks/s to take instead of measuring it")
	withOtel := flag.Bool("otel", false, "record OpenTelemetry spans and metrics with the SDK (exporters discard them)")
	flag.Parse()
	switch c.prune {
	case "off", "on", "both":
	default:
		fmt.Fprintf(os.Stderr, "qflowbench: -prune %q: want off, on or both\n", c.prune)
		os.Exit(2)
	}
	c.limits = strings.Split(*limits, ",")
	for _, l := range c.limits {
		if _, _, err := limitedChain(l); err != nil {
			fmt.Fprintln(os.Stderr, "qflowbench:", err)
			os.Exit(2)
		}
	}
	if *withOtel {
		shutdown := installOtel()
		defer shutdown()
	}
	usage := func(msg string) {
		fmt.Fprintln(os.Stderr, "qflowbench:", msg)
		os.Exit(2)
	}
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	c.workloads = strings.Split(workloads, ",")
	if c.soak > 0 && !explicit["workloads"] {
		c.workloads = []string{"soak"}
	}
	if slices.Contains(c.workloads, "soak") && c.soak == 0 {
		c.soak = 10 * time.Minute
	}
	for _, w := range c.workloads {
		if !slices.Contains([]string{"w0", "w1", "w1b", "w2", "w3", "soak"}, w) {
			usage(fmt.Sprintf("unknown workload %q", w))
		}
	}
	if c.soakRate <= 0 || c.soakTPS < 0 {
		usage("-soak-rate must be positive and -soak-tps non-negative")
	}
	if slices.Contains(c.runs, 0) || slices.Contains(c.fan, 0) {
		usage("-runs and -fan must be positive")
	}
	switch events {
	case "on":
		c.events = []bool{true}
	case "off":
		c.events = []bool{false}
	case "both":
		c.events = []bool{true, false}
	default:
		usage("-events must be on, off or both")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	results, err := run(ctx, c, os.Stderr)
	stop()
	if len(results) > 0 {
		printTable(os.Stdout, results)
		for _, r := range results {
			if r.Soak != nil {
				printSoak(os.Stdout, r)
			}
		}
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

// params are the sizes of one measurement.
type params struct {
	runs, fan, procs, history int
	prune                     bool   // prune the history while measuring
	limit                     string // the chain's limit across workers (-limit)
	name                      string // the variant: the sizes given as lists
}

// variants lists the sizes to measure workload w at: every combination of
// the list flags that apply to it.
func variants(c config, w string) []params {
	var out []params
	switch w {
	case "w1", "w1b":
		for _, n := range c.runs {
			for _, p := range c.procs {
				for _, h := range c.history {
					for _, pr := range pruneModes(c.prune, h) {
						for _, lim := range c.limits {
							v := params{runs: n, procs: p, history: h, prune: pr, limit: lim}
							var name []string
							if len(c.runs) > 1 || n != 2000 {
								name = append(name, fmt.Sprintf("runs=%d", n))
							}
							if len(c.procs) > 1 || p != 0 {
								name = append(name, fmt.Sprintf("procs=%d", p))
							}
							if len(c.history) > 1 || h != 0 {
								name = append(name, fmt.Sprintf("history=%d", h))
							}
							if pr {
								name = append(name, "pruning")
							}
							if len(c.limits) > 1 || lim != "none" {
								name = append(name, "limit="+lim)
							}
							v.name = strings.Join(name, " ")
							out = append(out, v)
						}
					}
				}
			}
		}
	case "w3":
		for _, n := range c.fan {
			v := params{fan: n}
			if len(c.fan) > 1 || n != 10000 {
				v.name = fmt.Sprintf("fan=%d", n)
			}
			out = append(out, v)
		}
	default:
		out = append(out, params{runs: c.runs[0], limit: "none"})
	}
	return out
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
				results = append(results, Result{Workload: w, Rep: rep, Metrics: m, At: time.Now().UTC()})
				fmt.Fprintf(log, "rep %d %s %v\n", rep, w, m)
				continue
			}
			for _, p := range variants(c, w) {
				for _, ev := range c.events {
					r := Result{Workload: w, Variant: p.name, Events: &ev, Rep: rep, Otel: otelTP != nil}
					var err error
					if w == "soak" {
						r.Soak, err = soak(ctx, c, ev, log)
						if r.Soak != nil {
							r.Metrics = r.Soak.summary()
						}
					} else {
						r.Metrics, err = withDatabase(ctx, c.url, func(pool *pgxpool.Pool) (map[string]float64, error) {
							switch w {
							case "w1":
								return chain(ctx, c, p, pool, ev, false, log)
							case "w1b":
								return chain(ctx, c, p, pool, ev, true, log)
							case "w2":
								return sequential(ctx, c, pool, ev)
							default:
								return fanOut(ctx, c, p, pool, ev)
							}
						})
					}
					if err != nil {
						return results, fmt.Errorf("%s: %w", strings.TrimSpace(w+" "+p.name), err)
					}
					r.At = time.Now().UTC()
					results = append(results, r)
					fmt.Fprintf(log, "rep %d %s events=%v %v\n", rep, strings.TrimSpace(w+" "+p.name), ev, r.Metrics)
				}
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

// printTable prints the median of each metric per workload, variant and
// events setting.
func printTable(w io.Writer, results []Result) {
	type key struct {
		workload string
		variant  string
		events   string
	}
	var keys []key
	vals := map[key]map[string][]float64{}
	for _, r := range results {
		k := key{r.Workload, cmp.Or(r.Variant, "-"), "-"}
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
	fmt.Fprintln(tw, "workload\tvariant\tevents\treps\tmedians")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", k.workload, k.variant, k.events, reps, strings.Join(parts, "  "))
	}
	tw.Flush()
}

// pruneModes lists whether to prune while measuring, for -prune and a
// history size (nothing to prune without history).
func pruneModes(mode string, history int) []bool {
	switch {
	case history == 0 || mode == "off":
		return []bool{false}
	case mode == "on":
		return []bool{true}
	default:
		return []bool{false, true}
	}
}
