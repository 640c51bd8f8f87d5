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
	"github.com/quantumflow/qflow/runtime/notify"
)

// exampleDatabase is the database the example uses on a server it found
// (with DATABASE_URL set, it uses the database that names).
const exampleDatabase = "qflow_example"

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

	url, stop, err := localpg.ForProgram(ctx, exampleDatabase, stdout)
	if err != nil {
		return err
	}
	defer stop()
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

	// Listen before starting the run, so that no event of it is missed.
	l, err := notify.Listen(ctx, pool, &notify.ListenOptions{Buffer: 1 << 15, Logger: logger}, notify.EventsChannel)
	if err != nil {
		return err
	}
	defer l.Close()

	began := time.Now()
	h, err := etl.StartEtl(ctx, client, etl.Input{Source: *source})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Run %s of flow %q started: loading %s\n", h.ID, etl.EtlFlow.Slug, *source)
	p := newProgress(stdout, began)
	followed := make(chan struct{})
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	go func() { defer close(followed); p.follow(followCtx, client, l, h.ID) }()
	out, err := h.Wait(ctx)
	select { // the run's last events are on their way
	case <-followed:
	case <-time.After(2 * time.Second):
		stopFollow()
		<-followed
	}
	if r, gerr := client.GetRun(context.WithoutCancel(ctx), h.ID); gerr == nil {
		p.sync(r) // in case events were lost
	}
	if err != nil {
		return err
	}
	printSummary(stdout, out.Load, time.Since(began))
	return printTables(ctx, stdout, pool, out.Load.Source)
}

// progress prints a run's progress from its events: steps as they start
// and finish, and, every 200ms, how many tasks of a map step are done.
type progress struct {
	out   io.Writer
	began time.Time
	steps map[string]*stepProgress
	order []string // steps in the order they were first seen
}

type stepProgress struct {
	status    string
	done      map[int]bool // indexes of the completed tasks
	total     int          // tasks in all (0 until known)
	shownDone int
	err       string
}

func newProgress(out io.Writer, began time.Time) *progress {
	return &progress{out: out, began: began, steps: map[string]*stepProgress{}}
}

func (p *progress) step(slug string) *stepProgress {
	s := p.steps[slug]
	if s == nil {
		s = &stepProgress{done: map[int]bool{}}
		p.steps[slug] = s
		p.order = append(p.order, slug)
	}
	return s
}

// rank orders statuses so that a late event never moves a step back.
func rank(status string) int {
	switch status {
	case "", runtime.StatusCreated:
		return 0
	case runtime.StatusStarted:
		return 1
	}
	return 2
}

// setStatus records a step's status and prints it if it moved forward.
func (p *progress) setStatus(slug, status, errText string) {
	s := p.step(slug)
	if rank(status) <= rank(s.status) {
		return
	}
	s.status, s.err = status, errText
	p.print(slug)
}

func (p *progress) print(slug string) {
	s := p.steps[slug]
	line := fmt.Sprintf("%7.2fs  %-9s %-10s", time.Since(p.began).Seconds(), slug, s.status)
	if s.total > 1 {
		line += fmt.Sprintf(" %d/%d tasks", len(s.done), s.total)
	}
	if s.err != "" {
		line += "  " + s.err
	}
	s.shownDone = len(s.done)
	fmt.Fprintln(p.out, strings.TrimRight(line, " "))
}

// follow reads the run's events from l until the run ends or ctx does.
func (p *progress) follow(ctx context.Context, c *runtime.Client, l *notify.Listener, id uuid.UUID) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	mine := notify.ForRun(id)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, slug := range p.order {
				if s := p.steps[slug]; s.status == runtime.StatusStarted && len(s.done) != s.shownDone {
					p.print(slug)
				}
			}
		case m, ok := <-l.C():
			if !ok {
				return
			}
			if m.Gap { // events were missed: read the run's state instead
				if r, err := c.GetRun(ctx, id); err == nil {
					p.sync(r)
				}
				continue
			}
			if m.Event == nil || !mine(*m.Event) {
				continue
			}
			e := *m.Event
			switch e.Type {
			case notify.StepStarted:
				if p.step(e.Step).total == 0 {
					if r, err := c.GetRun(ctx, id); err == nil { // learn the step's task count
						p.sync(r)
					}
				}
				p.setStatus(e.Step, runtime.StatusStarted, "")
			case notify.TaskCompleted:
				p.step(e.Step).done[e.TaskIdx()] = true
			case notify.StepCompleted:
				p.setStatus(e.Step, runtime.StatusCompleted, "")
			case notify.StepFailed:
				p.setStatus(e.Step, runtime.StatusFailed, e.Error)
			default:
				if e.Type.Terminal() {
					return
				}
			}
		}
	}
}

// sync takes the state of the run's steps from r.
func (p *progress) sync(r *runtime.Run) {
	for _, st := range r.Steps {
		if st.Status == runtime.StatusCreated {
			continue
		}
		s := p.step(st.Step)
		for _, t := range st.Tasks {
			if t.Status == runtime.StatusCompleted {
				s.done[t.Index] = true
			}
		}
		if st.TaskCount != nil {
			s.total = *st.TaskCount
		}
		p.setStatus(st.Step, st.Status, st.Error)
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
