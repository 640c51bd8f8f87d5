package gen_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/gen/internal/e2eflow"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

// runOptions reads back the options a run was started with.
type runOptions struct {
	Events, Sequential bool
	MaxAttempts        *int
	Timeout            *time.Duration // deadline - started_at
}

func readRunOptions(t *testing.T, pool *pgxpool.Pool, id uuid.UUID) runOptions {
	t.Helper()
	var o runOptions
	err := pool.QueryRow(context.Background(), `
		SELECT events, sequential, max_attempts, deadline - started_at FROM qflow.runs WHERE id = $1`, id).
		Scan(&o.Events, &o.Sequential, &o.MaxAttempts, &o.Timeout)
	if err != nil {
		t.Fatalf("read options of run %s: %v", id, err)
	}
	return o
}

// startWorker runs a worker for the e2e flow until the test ends.
func startWorker(t *testing.T, ctx context.Context, pool *pgxpool.Pool) {
	t.Helper()
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{PollInterval: 50 * time.Millisecond, Logger: quiet})
	if err := e2eflow.RegisterE2eDiamond(w); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("worker: %v", err)
		}
	})
}

// TestE2ETypedView reads runs through the generated typed view and handles:
// every step's state and typed output (a map step's as a slice), a run
// re-attached by id from another client, and the errors for ids that name
// no run of the flow or hold an output that does not decode.
func TestE2ETypedView(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	startWorker(t, ctx, db.Pool)

	run, err := e2eflow.StartE2eDiamond(ctx, c, e2eflow.Input{Text: "a b c"}) // no options: as before
	if err != nil {
		t.Fatalf("StartE2eDiamond: %v", err)
	}
	if _, err := run.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	v, err := run.View(ctx)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	want := e2eflow.Summary{Words: []string{"A", "B", "C"}, Count: 3}
	if v.ID != run.ID || v.Flow != "e2e_diamond" || v.Status != runtime.StatusCompleted || v.FinishedAt == nil {
		t.Errorf("view: %+v", v.RunInfo)
	}
	if v.Input != (e2eflow.Input{Text: "a b c"}) {
		t.Errorf("view input: %+v", v.Input)
	}
	if v.Output == nil || !cmp.Equal(*v.Output, e2eflow.E2eDiamondOutput{Join: want}) {
		t.Errorf("view output: %+v", v.Output)
	}
	s := v.Steps
	if diff := cmp.Diff([]string{"a", "b", "c"}, s.Split.Output); diff != "" {
		t.Errorf("split output (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"A", "B", "C"}, s.Upper.Output); diff != "" { // a map step: []T
		t.Errorf("upper output (-want +got):\n%s", diff)
	}
	if s.Count.Output != 3 || !cmp.Equal(s.Join.Output, want) {
		t.Errorf("count output %d, join output %+v", s.Count.Output, s.Join.Output)
	}
	if u := s.Upper.StepInfo; u.Step != "upper" || u.Status != runtime.StatusCompleted || u.TaskCount != 3 ||
		u.TasksDone != 3 || u.TasksFailed != 0 || u.Attempts != 3 || len(u.Tasks) != 3 || u.StartedAt == nil || u.FinishedAt == nil {
		t.Errorf("upper step: %+v", u)
	}

	// Re-attach from another client, as another process would.
	c2 := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet, DisableEvents: true})
	defer c2.Close()
	again, err := e2eflow.E2eDiamondRunByID(ctx, c2, run.ID)
	if err != nil {
		t.Fatalf("E2eDiamondRunByID: %v", err)
	}
	out, err := again.Wait(ctx)
	if err != nil || !cmp.Equal(out.Join, want) {
		t.Errorf("re-attached Wait: %+v, %v", out, err)
	}
	if v2, err := again.View(ctx); err != nil || v2.Steps.Count.Output != 3 {
		t.Errorf("re-attached View: %+v, %v", v2, err)
	}

	// Re-attach to a run still going and cancel it: retries of a flaky
	// step keep it going (its backoff doubles from 10ms).
	going, err := e2eflow.StartE2eDiamond(ctx, c, e2eflow.Input{Flaky: true}, &runtime.StartOptions{Retries: 100})
	if err != nil {
		t.Fatal(err)
	}
	h, err := e2eflow.E2eDiamondRunByID(ctx, c2, going.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Cancel(ctx); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if _, err := going.Wait(ctx); !errors.Is(err, runtime.ErrRunCancelled) {
		t.Errorf("Wait after Cancel: %v, want ErrRunCancelled", err)
	}
	if v, err := h.View(ctx); err != nil || v.Status != runtime.StatusCancelled || v.Output != nil || v.Steps.Join.Status != runtime.StatusCancelled {
		t.Errorf("View after Cancel: %+v, %v", v, err)
	}

	// Ids that name no run of this flow.
	if _, err := e2eflow.E2eDiamondRunByID(ctx, c, uuid.New()); !errors.Is(err, runtime.ErrRunNotFound) {
		t.Errorf("RunByID(unknown id): %v, want ErrRunNotFound", err)
	}
	if _, err := e2eflow.GetE2eDiamondRun(ctx, c, uuid.New()); !errors.Is(err, runtime.ErrRunNotFound) {
		t.Errorf("GetRun(unknown id): %v, want ErrRunNotFound", err)
	}
	other, err := runtime.NewFlow("other").Step("only", runtime.StepDef{}).Build()
	if err != nil {
		t.Fatal(err)
	}
	oh, err := c.StartFlow(ctx, other, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer oh.Cancel(ctx) //nolint:errcheck // the database goes with the test
	_, err = e2eflow.E2eDiamondRunByID(ctx, c, oh.ID)
	if !errors.Is(err, runtime.ErrRunNotFound) || !strings.Contains(err.Error(), `is of flow "other", not "e2e_diamond"`) {
		t.Errorf("RunByID(run of another flow): %v", err)
	}
	_, err = e2eflow.GetE2eDiamondRun(ctx, c, oh.ID)
	if !errors.Is(err, runtime.ErrRunNotFound) || !strings.Contains(err.Error(), `is of flow "other"`) {
		t.Errorf("GetRun(run of another flow): %v", err)
	}

	// An output that no longer decodes into the step's type names the step
	// and the type, and so does the run's output.
	if _, err := db.Pool.Exec(ctx, `
		UPDATE qflow.step_states ss SET output = '"three"'
		FROM qflow.steps st WHERE st.flow_id = ss.flow_id AND st.idx = ss.step_idx AND st.slug = 'count' AND ss.run_id = $1`, run.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE qflow.runs SET output = '{"join": 7}' WHERE id = $1`, run.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e2eflow.GetE2eDiamondRun(ctx, c, run.ID)
	for _, frag := range []string{`step "count": decode output as int: json: cannot unmarshal string`, `decode output as e2eflow.E2eDiamondOutput`} {
		if err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("view of a run whose outputs do not decode: %v; want it to say %q", err, frag)
		}
	}
}

// TestE2EOptions passes *runtime.StartOptions through every generated start
// function and checks the run got them: in the database, and in the
// attempts the typed view counts.
func TestE2EOptions(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	startWorker(t, ctx, db.Pool)
	flaky := e2eflow.Input{Flaky: true}

	// Without options a flaky split takes the flow's attempts=2.
	r, err := e2eflow.StartE2eDiamond(ctx, c, flaky)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(ctx); !errors.Is(err, runtime.ErrRunFailed) {
		t.Fatalf("flaky run: %v, want ErrRunFailed", err)
	}
	v, err := r.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != runtime.StatusFailed || v.FailedStep != "split" || v.Steps.Split.Attempts != 2 ||
		v.Steps.Split.TasksFailed != 1 || !strings.Contains(v.Steps.Split.Error, "flaky") || v.Steps.Split.Output != nil {
		t.Errorf("flaky run without options: %+v, split %+v", v.RunInfo, v.Steps.Split.StepInfo)
	}
	if got := readRunOptions(t, db.Pool, r.ID); got.Sequential || !got.Events || got.MaxAttempts != nil || got.Timeout != nil {
		t.Errorf("run without options stored %+v", got)
	}

	// Start: every option reaches the run.
	opts := &runtime.StartOptions{Timeout: time.Minute, Retries: 2, Sequential: true, Events: runtime.EventsOff}
	r, err = e2eflow.StartE2eDiamond(ctx, c, flaky, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(ctx); !errors.Is(err, runtime.ErrRunFailed) {
		t.Fatalf("flaky run: %v, want ErrRunFailed", err)
	}
	if v, err := r.View(ctx); err != nil || v.Steps.Split.Attempts != 3 {
		t.Errorf("Start with Retries 2: %v, split %+v, want 3 attempts", err, v.Steps.Split.StepInfo)
	}
	got := readRunOptions(t, db.Pool, r.ID)
	if !got.Sequential || got.Events || got.MaxAttempts == nil || *got.MaxAttempts != 3 || got.Timeout == nil || *got.Timeout != time.Minute {
		t.Errorf("Start with %+v stored %+v", opts, got)
	}

	// StartTx.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err = e2eflow.StartE2eDiamondTx(ctx, c, tx, e2eflow.Input{Text: "x"}, &runtime.StartOptions{Timeout: 30 * time.Second, Priority: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readRunOptions(t, db.Pool, r.ID); got.Timeout == nil || *got.Timeout != 30*time.Second {
		t.Errorf("StartTx with Timeout 30s stored %+v", got)
	}
	if out, err := r.Wait(ctx); err != nil || out.Join.Count != 1 {
		t.Errorf("StartTx run: %+v, %v", out, err)
	}
	// The run's priority reaches every task, added to the step priority
	// the annotation gave (count: priority=5).
	var prios map[string]int
	if err := db.Pool.QueryRow(ctx, `SELECT jsonb_object_agg(st.slug, t.priority) FROM qflow.step_tasks t
		JOIN qflow.steps st ON st.flow_id = t.flow_id AND st.idx = t.step_idx WHERE t.run_id = $1`, r.ID).Scan(&prios); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"split": 7, "upper": 7, "count": 12, "join": 7}; !maps.Equal(prios, want) {
		t.Errorf("StartTx with Priority 7: task priorities %v, want %v", prios, want)
	}

	// Run: one attempt with NoRetries.
	_, err = e2eflow.RunE2eDiamond(ctx, c, flaky, &runtime.StartOptions{Retries: runtime.NoRetries})
	var re *runtime.RunError
	if !errors.As(err, &re) {
		t.Fatalf("Run: %v, want a *runtime.RunError", err)
	}
	if v, err := e2eflow.GetE2eDiamondRun(ctx, c, re.RunID); err != nil || v.Steps.Split.Attempts != 1 {
		t.Errorf("Run with NoRetries: %v, split %+v, want 1 attempt", err, v.Steps.Split.StepInfo)
	}

	// A nil option is no option; two are an error and start nothing.
	if out, err := e2eflow.RunE2eDiamond(ctx, c, e2eflow.Input{Text: "y z"}, nil); err != nil || out.Join.Count != 2 {
		t.Errorf("Run with nil options: %+v, %v", out, err)
	}
	var before int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	_, err = e2eflow.StartE2eDiamond(ctx, c, e2eflow.Input{}, opts, opts)
	if err == nil || !strings.Contains(err.Error(), "StartE2eDiamond: at most one *runtime.StartOptions, got 2") {
		t.Errorf("Start with two options: %v", err)
	}
	var after int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("Start with two options started %d runs", after-before)
	}
}

// TestE2ELocalOptions passes options through RunE2eDiamondLocal.
func TestE2ELocalOptions(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	for _, tc := range []struct {
		opts     []*runtime.StartOptions
		attempts int
	}{
		{nil, 2}, // the flow's attempts=2
		{[]*runtime.StartOptions{{Retries: runtime.NoRetries, Sequential: true}}, 1},
	} {
		_, err := e2eflow.RunE2eDiamondLocal(ctx, c, e2eflow.Input{Flaky: true}, tc.opts...)
		var re *runtime.RunError
		if !errors.As(err, &re) {
			t.Fatalf("RunLocal(%v): %v, want a *runtime.RunError", tc.opts, err)
		}
		v, err := e2eflow.GetE2eDiamondRun(ctx, c, re.RunID)
		if err != nil {
			t.Fatal(err)
		}
		if v.Steps.Split.Attempts != tc.attempts {
			t.Errorf("RunLocal(%v): %d attempts, want %d", tc.opts, v.Steps.Split.Attempts, tc.attempts)
		}
		if got := readRunOptions(t, db.Pool, re.RunID); got.Sequential != (len(tc.opts) > 0) {
			t.Errorf("RunLocal(%v) stored %+v", tc.opts, got)
		}
	}
}

// TestE2EResume: the generated ResumeE2eDiamond brings a cancelled run
// back under its id and returns a handle whose typed Wait sees the new
// outcome; a completed run is not resumable.
func TestE2EResume(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	r, err := e2eflow.StartE2eDiamond(ctx, c, e2eflow.Input{Text: "a b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Cancel(ctx); err != nil { // no worker yet: nothing ran
		t.Fatal(err)
	}
	startWorker(t, ctx, db.Pool)
	again, err := e2eflow.ResumeE2eDiamond(ctx, c, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != r.ID {
		t.Fatalf("resumed handle has id %s, want %s", again.ID, r.ID)
	}
	out, err := again.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.Join.Count != 2 {
		t.Errorf("output after resume: %+v", out)
	}
	if err := again.Resume(ctx); !errors.Is(err, runtime.ErrRunNotResumable) {
		t.Errorf("resuming a completed run: %v, want ErrRunNotResumable", err)
	}
}
