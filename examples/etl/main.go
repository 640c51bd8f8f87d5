// Command etl runs QuantumFlow's example ETL flow (package
// github.com/quantumflow/qflow/examples/etl/etl) on PostgreSQL with
// in-process workers, shows its progress and prints a summary:
//
//	go run ./examples/etl
//
// It uses the server named by DATABASE_URL, else the local server at
// 127.0.0.1:5432, else a throwaway cluster started from the locally
// installed PostgreSQL binaries and removed on exit (see internal/localpg).
// It migrates the database, creates the example's tables, loads the CSV
// shipped with the example (or the one named by -source) and replaces what
// an earlier run loaded from the same source, so it can run any number of
// times.
//
// Flags:
//
//	-source PATH      CSV to load (default: the embedded sales.csv)
//	-concurrency N    tasks the in-process worker runs at once (default 64)
//	-v                log every task transition to standard error
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/examples/etl/etl"
	"github.com/quantumflow/qflow/internal/localpg"
	"github.com/quantumflow/qflow/runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "etl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("etl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	source := fs.String("source", etl.EmbeddedSource, "CSV `file` to load, or "+etl.EmbeddedSource)
	concurrency := fs.Int("concurrency", 64, "tasks the in-process worker runs at once")
	verbose := fs.Bool("v", false, "log every task transition to standard error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	url, cluster, err := localpg.Find(ctx)
	if err != nil {
		return err
	}
	defer cluster.Stop()
	if cluster != nil {
		fmt.Fprintf(stdout, "%s.\nStarted a throwaway PostgreSQL cluster in %s (removed on exit).\n", cluster.Reason, cluster.Dir())
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	client := runtime.NewClient(pool, &runtime.ClientOptions{Logger: logger})
	defer client.Close()
	if err := client.Migrate(ctx); err != nil {
		return err
	}
	etl.SetDatabase(pool)

	// In-process workers: any number of processes could run this part
	// instead (see examples/workers).
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{Concurrency: *concurrency, PollInterval: 100 * time.Millisecond, Logger: logger})
	if err := etl.RegisterEtl(w); err != nil {
		return err
	}
	wctx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()
	defer func() {
		stopWorker()
		<-workerDone
	}()

	began := time.Now()
	h, err := etl.StartEtl(ctx, client, etl.Input{Source: *source})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Run %s of flow %q started: loading %s\n", h.ID, etl.EtlFlow.Slug, *source)
	p := &progress{out: stdout, began: began, seen: map[string]stepSeen{}}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); p.watch(watchCtx, client, h.ID) }()
	out, err := h.Wait(ctx)
	stopWatch()
	<-watched
	if r, gerr := client.GetRun(context.WithoutCancel(ctx), h.ID); gerr == nil {
		p.show(r) // the final state, in case the last poll missed it
	}
	if err != nil {
		return err
	}
	printSummary(stdout, out.Load, time.Since(began))
	return printTables(ctx, stdout, pool, out.Load.Source)
}

// progress prints what changed in a run since the last look: steps that
// started or finished, and how many tasks of a map step are done.
type progress struct {
	out   io.Writer
	began time.Time
	seen  map[string]stepSeen
}

type stepSeen struct {
	status string
	done   int
}

// watch polls the run every 200ms until ctx ends.
// TODO(notify): use runtime/notify.Listen events instead of polling once
// that package lands.
func (p *progress) watch(ctx context.Context, c *runtime.Client, id uuid.UUID) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if r, err := c.GetRun(ctx, id); err == nil {
			p.show(r)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *progress) show(r *runtime.Run) {
	for _, s := range r.Steps {
		done := 0
		for _, t := range s.Tasks {
			if t.Status == runtime.StatusCompleted {
				done++
			}
		}
		old, ok := p.seen[s.Step]
		if ok && old.status == s.Status && old.done == done || s.Status == runtime.StatusCreated {
			continue
		}
		p.seen[s.Step] = stepSeen{status: s.Status, done: done}
		line := fmt.Sprintf("%7.2fs  %-9s %-10s", time.Since(p.began).Seconds(), s.Step, s.Status)
		if s.TaskCount != nil && *s.TaskCount != 1 {
			line += fmt.Sprintf(" %d/%d tasks", done, *s.TaskCount)
		}
		if s.Error != "" {
			line += "  " + s.Error
		}
		fmt.Fprintln(p.out, strings.TrimRight(line, " "))
	}
}

func printSummary(w io.Writer, s etl.Summary, took time.Duration) {
	q := s.Quality
	fmt.Fprintf(w, "\nLoaded %s in %.1fs: %d rows, %d valid, %d rejected.\n\n", s.Source, took.Seconds(), q.Rows, q.Valid, q.Rejected)
	fmt.Fprintf(w, "  %-12s %7s %7s %14s\n", "category", "orders", "units", "revenue")
	var orders, units int
	for _, t := range s.Categories {
		fmt.Fprintf(w, "  %-12s %7d %7d %14s\n", t.Category, t.Orders, t.Units, money(t.RevenueCents))
		orders += t.Orders
		units += t.Units
	}
	fmt.Fprintf(w, "  %-12s %7d %7d %14s\n", "total", orders, units, money(s.RevenueCents))
	if q.Rejected == 0 {
		return
	}
	kinds := make([]string, 0, len(q.ByProblem))
	for k := range q.ByProblem {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "\nRejected rows by problem:")
	for i, k := range kinds {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(w, "%s %s %d", sep, k, q.ByProblem[k])
	}
	fmt.Fprintln(w)
	for i, r := range q.Rejects {
		if i == 3 {
			fmt.Fprintf(w, "  ... and %d more (table etl_rejects)\n", len(q.Rejects)-i)
			break
		}
		fmt.Fprintf(w, "  line %d: %s  [%s]\n", r.Line, r.Problem, r.Raw)
	}
}

// money formats cents as 1,234,567.89.
func money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	whole := fmt.Sprint(cents / 100)
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return fmt.Sprintf("%s%s.%02d", sign, b.String(), cents%100)
}

// printTables shows what the load step left in the database.
func printTables(ctx context.Context, w io.Writer, pool *pgxpool.Pool, source string) error {
	var loads, totals, rejects int
	err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM etl_loads),
		(SELECT count(*) FROM etl_category_totals WHERE source = $1),
		(SELECT count(*) FROM etl_rejects WHERE source = $1)`, source).Scan(&loads, &totals, &rejects)
	if err != nil {
		return fmt.Errorf("read the loaded tables: %w", err)
	}
	fmt.Fprintf(w, "\nIn PostgreSQL: etl_category_totals has %d rows and etl_rejects %d for this source; etl_loads has %d source(s).\n", totals, rejects, loads)
	return nil
}
