package gen_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/quantumflow/qflow/gen"
	"github.com/quantumflow/qflow/gen/internal/e2ecron"
	"github.com/quantumflow/qflow/gen/internal/e2eflow"
	"github.com/quantumflow/qflow/gen/internal/e2esignal"
	"github.com/quantumflow/qflow/gen/internal/e2esubflow"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

// quiet drops the runtime's logs; the tests check outcomes.
var quiet = slog.New(slog.DiscardHandler)

// TestE2EGeneratedIsCurrent keeps the committed generated code of
// internal/e2eflow in step with the generator (go generate ./gen/... fixes it).
func TestE2EGeneratedIsCurrent(t *testing.T) {
	results, diags := gen.Generate(context.Background(), ".", nil, []string{"./internal/e2eflow"}, gen.Options{SQL: true})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	for _, r := range results {
		stale, err := r.Stale()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range stale {
			t.Errorf("%s is stale: run go generate ./gen/...", f.Path)
		}
	}
}

// TestE2E runs the generated flow (a map step inside a diamond) on
// PostgreSQL through the generated Run, Start, StartTx and RunLocal
// functions.
func TestE2E(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{PollInterval: 50 * time.Millisecond, Logger: quiet})
	if err := e2eflow.RegisterE2eDiamond(w); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("worker: %v", err)
		}
	}()

	want := e2eflow.E2eDiamondOutput{Join: e2eflow.Summary{Words: []string{"A", "B", "C"}, Count: 3}}
	out, err := e2eflow.RunE2eDiamond(ctx, c, e2eflow.Input{Text: "a b c"})
	if err != nil {
		t.Fatalf("RunE2eDiamond: %v", err)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("RunE2eDiamond output (-want +got):\n%s", diff)
	}

	// An empty map completes at once with [].
	out, err = e2eflow.RunE2eDiamond(ctx, c, e2eflow.Input{Text: ""})
	if err != nil {
		t.Fatalf("RunE2eDiamond(empty): %v", err)
	}
	if out.Join.Count != 0 || len(out.Join.Words) != 0 {
		t.Errorf("RunE2eDiamond(empty) = %+v", out)
	}

	// Start inside a transaction: the run exists only once tx commits.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	run, err := e2eflow.StartE2eDiamondTx(ctx, c, tx, e2eflow.Input{Text: "x y"})
	if err != nil {
		t.Fatalf("StartE2eDiamondTx: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	out, err = run.Wait(ctx)
	if err != nil || out.Join.Count != 2 {
		t.Errorf("StartE2eDiamondTx run: %+v, %v", out, err)
	}

	// A permanent error fails the run with a *runtime.RunError.
	_, err = e2eflow.RunE2eDiamond(ctx, c, e2eflow.Input{Text: "a", Fail: true})
	var re *runtime.RunError
	if !errors.Is(err, runtime.ErrRunFailed) || !errors.As(err, &re) || re.Step != "join" {
		t.Errorf("failing run: err = %v, want a RunError at step join", err)
	}

	// The stored shape is the one computed at generate time.
	var hash string
	if err := db.Pool.QueryRow(ctx, `SELECT shape_hash FROM qflow.flows WHERE slug = $1`, e2eflow.E2eDiamondFlow.Slug).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if hash != e2eflow.E2eDiamondShapeHash {
		t.Errorf("stored shape hash %s, generated %s", hash, e2eflow.E2eDiamondShapeHash)
	}

	// The annotations' limits reached the engine, keyed by the JSON paths
	// qflowgen resolved, and held the keyed tasks: "a b a" has two tasks
	// of key "a".
	var limits string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(format('%s:%s:%s:%s:%s', st.slug, st.concurrency, st.rate_n, st.burst, st.limit_key), ' ' ORDER BY st.idx)
		FROM qflow.steps st JOIN qflow.flows f ON f.id = st.flow_id WHERE f.slug = $1 AND st.gated`, e2eflow.E2eDiamondFlow.Slug).Scan(&limits); err != nil {
		t.Fatal(err)
	}
	if want := "upper:2:::{} join::100:10:{run,Text}"; limits != want {
		t.Errorf("stored limits %q, want %q", limits, want)
	}
	out, err = e2eflow.RunE2eDiamond(ctx, c, e2eflow.Input{Text: "a b a"})
	if err != nil || out.Join.Count != 3 {
		t.Fatalf("RunE2eDiamond(a b a) = %+v, %v", out, err)
	}
	var keys string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(t.limit_key, ',' ORDER BY t.step_idx, t.task_index)
		FROM qflow.step_tasks t JOIN qflow.runs r ON r.id = t.run_id
		WHERE r.input->>'Text' = 'a b a' AND t.limit_key IS NOT NULL`).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if keys != "a,b,a,a b a" {
		t.Errorf("limit keys %q, want the words, then the text", keys)
	}
}

// TestE2ELocal runs the flow with RunE2eDiamondLocal (in-process workers).
func TestE2ELocal(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	out, err := e2eflow.RunE2eDiamondLocal(ctx, c, e2eflow.Input{Text: "one two"})
	if err != nil {
		t.Fatalf("RunE2eDiamondLocal: %v", err)
	}
	if diff := cmp.Diff(e2eflow.Summary{Words: []string{"ONE", "TWO"}, Count: 2}, out.Join); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestE2EMigration applies the migration written by -sql and checks that
// the engine then finds the flow already defined with the same shape.
func TestE2EMigration(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	sql, err := os.ReadFile(filepath.Join("internal", "e2eflow", "qflow_e2e_diamond.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if _, err := db.Pool.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("apply migration: %v", err)
		}
	}
	var n int
	var hash string
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), min(shape_hash) FROM qflow.flows WHERE slug = $1`, e2eflow.E2eDiamondFlow.Slug).Scan(&n, &hash); err != nil {
		t.Fatal(err)
	}
	if n != 1 || hash != e2eflow.E2eDiamondShapeHash {
		t.Fatalf("after migration: %d rows, hash %s; want 1, %s", n, hash, e2eflow.E2eDiamondShapeHash)
	}
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	v, err := c.DefineFlow(ctx, e2eflow.E2eDiamondFlow)
	if err != nil {
		t.Fatal(err)
	}
	if v != 1 {
		t.Errorf("DefineFlow after the migration: version %d, want 1 (the migrated one)", v)
	}
}

// TestE2ECron runs a flow whose annotation declares a per-second schedule:
// the generated RegisterE2eTick creates the schedule when the worker
// starts, and its ticks start runs with the zero input.
func TestE2ECron(t *testing.T) {
	ctx, c := runGenerated(t, "e2ecron", e2ecron.RegisterE2eTick)
	for {
		runs, err := c.ListRuns(ctx, runtime.ListRunsParams{Flow: "e2e_tick", Status: runtime.StatusCompleted})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) >= 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d completed runs of the schedule, want 2", len(runs))
		case <-time.After(50 * time.Millisecond):
		}
	}
	s, err := c.GetSchedule(ctx, "e2e_tick")
	if err != nil {
		t.Fatal(err)
	}
	if s.Flow != "e2e_tick" || s.Cron != "* * * * * *" || s.TZ != "Asia/Tokyo" || string(s.Input) != `{"Label": ""}` {
		t.Errorf("schedule stored as %+v", s)
	}
	ticks, err := c.ScheduleTicks(ctx, "e2e_tick")
	if err != nil || len(ticks) < 2 || ticks[0].RunID == nil {
		t.Fatalf("ScheduleTicks = %+v, %v", ticks, err)
	}
	v, err := e2ecron.GetE2eTickRun(ctx, c, *ticks[len(ticks)-1].RunID)
	if err != nil {
		t.Fatal(err)
	}
	if v.Output == nil || v.Output.Stamp != "zero" || v.Input != (e2ecron.Input{}) {
		t.Errorf("the first tick's run: input %+v, output %+v; want the zero input and stamp \"zero\"", v.Input, v.Output)
	}
}

// TestE2ESignal runs a generated flow whose step waits for a signal: the
// run waits until the generated SignalE2eApproveApproval delivers the typed
// payload, and a second signal is refused.
func TestE2ESignal(t *testing.T) {
	ctx, c := runGenerated(t, "e2esignal", e2esignal.RegisterE2eApprove)
	run, err := e2esignal.StartE2eApprove(ctx, c, e2esignal.Input{Doc: "memo"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := c.GetRun(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.Steps[1].Status == runtime.StatusWaiting {
			break
		}
		if r.Status != runtime.StatusStarted {
			t.Fatalf("run %s before the signal", r.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := e2esignal.SignalE2eApproveApproval(ctx, c, run.ID, e2esignal.Approval{By: "ann", OK: true}); err != nil {
		t.Fatal(err)
	}
	if err := e2esignal.SignalE2eApproveApproval(ctx, c, run.ID, e2esignal.Approval{By: "bob"}); !errors.Is(err, runtime.ErrSignalSent) && !errors.Is(err, runtime.ErrRunFinished) {
		t.Errorf("second signal: %v; want ErrSignalSent (or ErrRunFinished)", err)
	}
	out, err := run.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "published draft of memo, approved by ann"; out.Publish != want {
		t.Fatalf("output %+v; want Publish %q", out, want)
	}
}

// TestE2ESubflow runs a generated flow whose steps, declared with
// subflow=, run another generated flow as child runs (one of them a map
// step, one child per element), and a step that takes their typed outputs.
func TestE2ESubflow(t *testing.T) {
	ctx, c := runGenerated(t, "e2esubflow", func(w *runtime.Worker) error {
		if err := e2esubflow.RegisterE2eCharge(w); err != nil {
			return err
		}
		return e2esubflow.RegisterE2eCheckout(w)
	})
	run, err := e2esubflow.StartE2eCheckout(ctx, c, e2esubflow.Cart{Items: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := run.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "paid 2 for order-1; paid 1 for a; paid 1 for b"; out.Receipt != want {
		t.Fatalf("output %+v; want Receipt %q", out, want)
	}
	v, err := run.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Steps.Charge.Output.Pay; got != "paid 2 for order-1" {
		t.Errorf("step charge output %q", got)
	}
	if len(v.Steps.ChargeEach.Output) != 2 {
		t.Errorf("step charge_each output %+v; want 2 children's outputs", v.Steps.ChargeEach.Output)
	}
	r, err := c.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Children) != 3 {
		t.Fatalf("%d children; want 3 (charge, and charge_each per element)", len(r.Children))
	}
	for _, ch := range r.Children {
		if ch.Flow != e2esubflow.E2eChargeFlow.Slug {
			t.Errorf("child of flow %q", ch.Flow)
		}
	}
}

// runGenerated checks that the generated code of ./internal/pkg is what
// qflowgen generates today, then runs a client and a worker with its flow
// registered (by register) on a fresh database until the test ends.
func runGenerated(t *testing.T, pkg string, register func(*runtime.Worker) error) (context.Context, *runtime.Client) {
	t.Helper()
	results, diags := gen.Generate(context.Background(), ".", nil, []string{"./internal/" + pkg}, gen.Options{})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	for _, r := range results {
		if stale, err := r.Stale(); err != nil || len(stale) > 0 {
			t.Fatalf("internal/%s is stale (%v): run go generate ./gen/...", pkg, err)
		}
	}
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	t.Cleanup(c.Close)
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{PollInterval: 100 * time.Millisecond, Logger: quiet})
	if err := register(w); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	return ctx, c
}
