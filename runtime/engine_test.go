package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/quantumflow/qflow/internal/pgtest"
	qflow "github.com/quantumflow/qflow/runtime"
)

// quiet is the logger tests pass unless QFLOW_TEST_LOG is set.
func quiet() *slog.Logger {
	if os.Getenv("QFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type env struct {
	t      testing.TB
	db     *pgtest.DB
	client *qflow.Client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	db := pgtest.New(t)
	c := qflow.NewClient(db.Pool, &qflow.ClientOptions{Logger: quiet()})
	t.Cleanup(c.Close)
	return &env{t: t, db: db, client: c}
}

// startWorker runs a worker with the flow registered until the test ends.
func (e *env) startWorker(def qflow.FlowDef, h map[string]qflow.Handler, opts *qflow.WorkerOptions) *qflow.Worker {
	e.t.Helper()
	if opts == nil {
		opts = &qflow.WorkerOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 200 * time.Millisecond
	}
	w := qflow.NewWorker(e.db.Pool, opts)
	if err := w.Register(def, h); err != nil {
		e.t.Fatal(err)
	}
	runWorker(e.t, w)
	return w
}

// runWorker runs w until the test ends, and checks that Run returned no
// error.
func runWorker(t testing.TB, w *qflow.Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker.Run: %v", err)
		}
	})
}

// lockFlowRow holds the row of flow version id FOR UPDATE, in a
// transaction rolled back when the test ends if not before: a run's insert
// waits for it (the foreign key to its flow).
func lockFlowRow(t testing.TB, e *env, ctx context.Context, id int) pgx.Tx {
	t.Helper()
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `SELECT 1 FROM qflow.flows WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	return tx
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func decode[T any](t *testing.T, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

func TestChain(t *testing.T) {
	e := newEnv(t)
	def := qflow.FlowDef{Slug: "chain", Steps: []qflow.StepDef{
		{Slug: "a", TakesInput: true},
		{Slug: "b", DependsOn: []string{"a"}},
		{Slug: "c", DependsOn: []string{"b"}, TakesInput: true},
	}}
	e.startWorker(def, map[string]qflow.Handler{
		"a": qflow.HandlerFunc(func(_ context.Context, in struct{ Run int }) (int, error) { return in.Run + 1, nil }),
		"b": qflow.HandlerFunc(func(_ context.Context, in struct{ A int }) (int, error) { return in.A * 10, nil }),
		"c": qflow.HandlerFunc(func(_ context.Context, in struct{ Run, B int }) (string, error) {
			return fmt.Sprintf("%d:%d", in.Run, in.B), nil
		}),
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := decode[map[string]string](t, out)
	if diff := cmp.Diff(map[string]string{"c": "4:50"}, got); diff != "" {
		t.Fatalf("output (-want +got):\n%s", diff)
	}
}

func TestDiamondMergesDependencies(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("diamond").
		Step("root", qflow.StepDef{TakesInput: true}).
		Step("left", qflow.StepDef{DependsOn: []string{"root"}}).
		Step("right", qflow.StepDef{DependsOn: []string{"root"}, TakesInput: true}).
		Step("join", qflow.StepDef{DependsOn: []string{"right", "left"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	type joinIn struct {
		Left  []string       `json:"left"`
		Right map[string]int `json:"right"`
		Run   *int           `json:"run"`
	}
	var gotJoin joinIn
	e.startWorker(def, map[string]qflow.Handler{
		"root": qflow.HandlerFunc(func(_ context.Context, in struct{ Run string }) (string, error) { return in.Run + "!", nil }),
		"left": qflow.HandlerFunc(func(_ context.Context, in struct{ Root string }) ([]string, error) {
			return []string{in.Root, "L"}, nil
		}),
		"right": qflow.HandlerFunc(func(_ context.Context, in struct {
			Root string
			Run  string
		}) (map[string]int, error) {
			return map[string]int{in.Root: len(in.Run)}, nil
		}),
		"join": qflow.HandlerFunc(func(_ context.Context, in joinIn) (string, error) {
			gotJoin = in
			return fmt.Sprint(len(in.Left) + len(in.Right)), nil
		}),
	}, nil)
	ctx := ctxT(t, 30*time.Second)
	h, err := e.client.StartFlow(ctx, def, "go", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(joinIn{Left: []string{"go!", "L"}, Right: map[string]int{"go!": 2}}, gotJoin); diff != "" {
		t.Errorf("join input (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"join": "3"}, decode[map[string]string](t, out)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	run, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, s := range run.Steps {
		statuses = append(statuses, s.Step+"="+s.Status)
		if len(s.Tasks) != 1 || s.Tasks[0].Attempts != 1 || s.Tasks[0].Status != qflow.StatusCompleted {
			t.Errorf("step %s tasks: %+v", s.Step, s.Tasks)
		}
	}
	want := []string{"root=completed", "left=completed", "right=completed", "join=completed"}
	if diff := cmp.Diff(want, statuses); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
}

func TestWideFanOutHasAllLeavesInOutput(t *testing.T) {
	e := newEnv(t)
	b := qflow.NewFlow("wide").Step("src", qflow.StepDef{TakesInput: true})
	h := map[string]qflow.Handler{
		"src": qflow.HandlerFunc(func(_ context.Context, in struct{ Run int }) (int, error) { return in.Run, nil }),
	}
	want := map[string]int{}
	for i := range 20 {
		slug := fmt.Sprintf("leaf_%02d", i)
		b.Step(slug, qflow.StepDef{DependsOn: []string{"src"}})
		h[slug] = qflow.HandlerFunc(func(_ context.Context, in struct{ Src int }) (int, error) { return in.Src * i, nil })
		want[slug] = 3 * i
	}
	def, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 4})
	ctx := ctxT(t, 30*time.Second)
	out, err := e.client.RunLocal(ctx, def, h, 3, &qflow.WorkerOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, decode[map[string]int](t, out)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func mapFlow(t *testing.T) (qflow.FlowDef, map[string]qflow.Handler) {
	def, err := qflow.NewFlow("mapper").
		Step("list", qflow.StepDef{TakesInput: true}).
		MapStep("double", "list", qflow.StepOptions{}).
		MapStep("show", "double", qflow.StepOptions{}).
		Step("sum", qflow.StepDef{DependsOn: []string{"double"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	return def, map[string]qflow.Handler{
		"list": qflow.HandlerFunc(func(_ context.Context, in struct{ Run int }) ([]int, error) {
			out := make([]int, in.Run)
			for i := range out {
				out[i] = i
			}
			return out, nil
		}),
		"double": qflow.HandlerFunc(func(_ context.Context, n int) (int, error) { return 2 * n, nil }),
		"show":   qflow.HandlerFunc(func(_ context.Context, n int) (string, error) { return fmt.Sprint(n), nil }),
		"sum": qflow.HandlerFunc(func(_ context.Context, in struct{ Double []int }) (int, error) {
			s := 0
			for _, v := range in.Double {
				s += v
			}
			return s, nil
		}),
	}
}

func TestMapSizes(t *testing.T) {
	e := newEnv(t)
	def, h := mapFlow(t)
	e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 16})
	for _, n := range []int{0, 1, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ctx := ctxT(t, 60*time.Second)
			run, err := e.client.StartFlow(ctx, def, n, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := run.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				Show []string `json:"show"`
				Sum  int      `json:"sum"`
			}
			want := result{Show: []string{}, Sum: n * (n - 1)}
			for i := range n {
				want.Show = append(want.Show, fmt.Sprint(2*i))
			}
			if diff := cmp.Diff(want, decode[result](t, out)); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRootMap(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("rootmap").MapStep("up", "", qflow.StepOptions{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]qflow.Handler{"up": qflow.HandlerFunc(func(_ context.Context, s string) (string, error) { return s + s, nil })}
	e.startWorker(def, h, nil)
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, []string{"a", "b", "c"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"up": {"aa", "bb", "cc"}}, decode[map[string][]string](t, out)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	// A root map refuses a non-array input, and nothing is left behind.
	_, err = e.client.StartFlow(ctx, def, map[string]int{"x": 1}, nil)
	if !errors.Is(err, qflow.ErrBadInput) {
		t.Fatalf("non-array input to a root map: %v; want ErrBadInput", err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 1)
}

func TestMapOverNonArrayFailsRun(t *testing.T) {
	e := newEnv(t)
	def, err := qflow.NewFlow("badmap").
		Step("obj", qflow.StepDef{}).
		MapStep("each", "obj", qflow.StepOptions{}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]qflow.Handler{
		"obj":  qflow.HandlerFunc(func(context.Context, any) (map[string]int, error) { return map[string]int{"a": 1}, nil }),
		"each": qflow.HandlerFunc(func(_ context.Context, v any) (any, error) { return v, nil }),
	}
	e.startWorker(def, h, nil)
	ctx := ctxT(t, 30*time.Second)
	run, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = run.Wait(ctx)
	var re *qflow.RunError
	if !errors.As(err, &re) || !errors.Is(err, qflow.ErrRunFailed) {
		t.Fatalf("Wait: %v; want a failed run", err)
	}
	if re.Step != "each" || !strings.Contains(re.Message, `map step "each" needs a JSON array from step "obj", got a JSON object`) {
		t.Fatalf("run error: %+v", re)
	}
}

func assertCount(t *testing.T, e *env, query string, want int) {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("%s = %d, want %d", query, n, want)
	}
}
