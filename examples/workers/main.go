package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/localpg"
	"github.com/quantumflow/qflow/runtime"
)

// Environment of a worker process.
const (
	envRole        = "QFLOW_EXAMPLE_ROLE" // "worker" in a worker process
	envName        = "QFLOW_EXAMPLE_WORKER"
	envWork        = "QFLOW_EXAMPLE_WORK"
	envConcurrency = "QFLOW_EXAMPLE_CONCURRENCY"
)

// exampleDatabase is the database the example uses on a server it found
// (with DATABASE_URL set, it uses the database that names).
const exampleDatabase = "qflow_example"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if os.Getenv(envRole) == "worker" {
		err = worker(ctx, os.Stdin, os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "workers:", err)
		os.Exit(1)
	}
}

// squares is the flow every process registers: split makes a list of
// numbers, render runs once per number, sum adds the results.
func squares(work time.Duration) (runtime.FlowDef, map[string]runtime.Handler) {
	def, err := runtime.NewFlow("squares").
		Options(runtime.StepOptions{BaseDelay: 100 * time.Millisecond}).
		Step("split", runtime.StepDef{TakesInput: true}).
		MapStep("render", "split", runtime.StepOptions{Timeout: 10 * time.Second}).
		Step("sum", runtime.StepDef{DependsOn: []string{"render"}}).
		Build()
	if err != nil {
		panic(err) // a static definition: a bug if it does not build
	}
	return def, map[string]runtime.Handler{
		"split": runtime.HandlerFunc(func(ctx context.Context, in struct {
			Run struct{ Items int } `json:"run"`
		}) ([]int, error) {
			out := make([]int, in.Run.Items)
			for i := range out {
				out[i] = i
			}
			return out, nil
		}),
		"render": runtime.HandlerFunc(func(ctx context.Context, n int) (int, error) {
			select {
			case <-time.After(work):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return n * n, nil
		}),
		"sum": runtime.HandlerFunc(func(ctx context.Context, in struct {
			Render []int `json:"render"`
		}) (int, error) {
			s := 0
			for _, v := range in.Render {
				s += v
			}
			return s, nil
		}),
	}
}

// worker is a worker process: it runs a worker for the flow until its
// standard input closes or ctx ends. It prints "ready NAME WORKER-ID PID"
// once it is claiming.
func worker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	url := os.Getenv(localpg.EnvURL)
	if url == "" {
		return fmt.Errorf("worker process: %s is not set", localpg.EnvURL)
	}
	work, _ := time.ParseDuration(os.Getenv(envWork))
	concurrency, _ := strconv.Atoi(os.Getenv(envConcurrency))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // the parent closes our stdin (or dies): stop
		io.Copy(io.Discard, stdin)
		cancel()
	}()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{Concurrency: concurrency, PollInterval: 100 * time.Millisecond, Logger: logger})
	def, handlers := squares(work)
	if err := w.Register(def, handlers); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ready %s %s %d\n", os.Getenv(envName), w.ID(), os.Getpid())
	return w.Run(ctx)
}

// child is a started worker process.
type child struct {
	name  string
	id    uuid.UUID
	pid   int
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("workers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 3, "worker processes")
	items := fs.Int("items", 300, "tasks of the map step")
	work := fs.Duration("work", 10*time.Millisecond, "time each task pretends to work")
	concurrency := fs.Int("concurrency", 4, "tasks each worker runs at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *items < 0 || *concurrency < 1 {
		return errors.New("-n and -concurrency must be at least 1, -items at least 0")
	}

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
	client := runtime.NewClient(pool, &runtime.ClientOptions{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	defer client.Close()
	if err := client.Migrate(ctx); err != nil {
		return err
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var children []*child
	defer func() { // close their stdin: they shut down gracefully
		for _, c := range children {
			c.stdin.Close()
		}
		for _, c := range children {
			c.cmd.Wait()
		}
	}()
	for i := range *n {
		c := &child{name: fmt.Sprintf("w%d", i+1)}
		c.cmd = exec.Command(self)
		c.cmd.Env = append(os.Environ(), envRole+"=worker", envName+"="+c.name,
			localpg.EnvURL+"="+url, envWork+"="+work.String(), envConcurrency+"="+strconv.Itoa(*concurrency))
		c.cmd.Stderr = stderr
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			return err
		}
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := c.cmd.Start(); err != nil {
			return fmt.Errorf("start worker process: %w", err)
		}
		children = append(children, c)
		line, err := bufio.NewReader(out).ReadString('\n')
		var name, id string
		if _, serr := fmt.Sscanf(line, "ready %s %s %d", &name, &id, &c.pid); err != nil || serr != nil {
			return fmt.Errorf("worker process %s did not start: %q %v", c.name, line, err)
		}
		if c.id, err = uuid.Parse(id); err != nil {
			return fmt.Errorf("worker process %s: %w", c.name, err)
		}
		fmt.Fprintf(stdout, "worker process %s started (pid %d, worker %s)\n", c.name, c.pid, c.id)
	}

	def, _ := squares(*work)
	began := time.Now()
	h, err := client.StartFlow(ctx, def, map[string]int{"Items": *items}, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "run %s started: %d tasks of %s, shared by %d processes\n", h.ID, *items, *work, *n)
	out, err := h.Wait(ctx)
	if err != nil {
		return err
	}
	took := time.Since(began)
	r, err := client.GetRun(ctx, h.ID)
	if err != nil {
		return err
	}
	byWorker := map[uuid.UUID]int{}
	for _, s := range r.Steps {
		if s.Step != "render" {
			continue
		}
		for _, t := range s.Tasks {
			if t.WorkerID != nil {
				byWorker[*t.WorkerID]++
			}
		}
	}
	fmt.Fprintf(stdout, "run completed in %.2fs, output %s\n", took.Seconds(), out)
	sort.Slice(children, func(i, j int) bool { return children[i].name < children[j].name })
	var lines []string
	for _, c := range children {
		lines = append(lines, fmt.Sprintf("  %s (pid %d): %d render tasks", c.name, c.pid, byWorker[c.id]))
	}
	fmt.Fprintln(stdout, "tasks per worker process:\n"+strings.Join(lines, "\n"))
	return nil
}
