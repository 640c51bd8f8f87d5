package runtime_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

// Limits across workers (StepOptions.Concurrency, Rate, Key and the flow's
// Concurrency), tested with worker processes: the test binary runs itself
// as TestLimitsWorkerChild with the scenario's name, and each handler
// records when it ran in limits_log.

const (
	envLimitsChild = "QFLOW_LIMITS_CHILD" // the scenario a child worker serves
	envLimitsURL   = "QFLOW_LIMITS_URL"
	envLimitsSlots = "QFLOW_LIMITS_SLOTS"
)

// limitsScenario is a flow and how long each of its tasks takes.
type limitsScenario struct {
	def  qflow.FlowDef
	took time.Duration
}

// Each scenario's flow: root (taking the input) returns the elements its
// map steps run over.
func limitsScenarios() map[string]limitsScenario {
	build := func(b *qflow.FlowBuilder) qflow.FlowDef {
		def, err := b.Build()
		if err != nil {
			panic(err)
		}
		return def
	}
	return map[string]limitsScenario{
		// A step limited to 2 at once beside one without a limit.
		"conc": {build(qflow.NewFlow("lim_conc").
			Step("root", qflow.StepDef{TakesInput: true}).
			MapStep("limited", "root", qflow.StepOptions{Concurrency: 2}).
			MapStep("free", "root", qflow.StepOptions{})), 40 * time.Millisecond},
		// The whole flow limited to 3 at once.
		"flow": {build(qflow.NewFlow("lim_flow").Options(qflow.StepOptions{Concurrency: 3}).
			Step("root", qflow.StepDef{TakesInput: true}).
			MapStep("a", "root", qflow.StepOptions{}).
			MapStep("b", "root", qflow.StepOptions{})), 30 * time.Millisecond},
		// At most 2 at once per customer.
		"key": {build(qflow.NewFlow("lim_key").
			Step("root", qflow.StepDef{TakesInput: true}).
			MapStep("sync", "root", qflow.StepOptions{Concurrency: 2, Key: ".customer"})), 50 * time.Millisecond},
		// The same without a limit, to compare.
		"keyfree": {build(qflow.NewFlow("lim_keyfree").
			Step("root", qflow.StepDef{TakesInput: true}).
			MapStep("sync", "root", qflow.StepOptions{})), 50 * time.Millisecond},
		// At most 20 starts a second, 5 at once.
		"rate": {build(qflow.NewFlow("lim_rate").
			Step("root", qflow.StepDef{TakesInput: true}).
			MapStep("call", "root", qflow.StepOptions{Rate: qflow.Rate{N: 20, Per: time.Second, Burst: 5}})), time.Millisecond},
		// One step, run by a per-second schedule the workers declare
		// (TestScheduleThreeProcessesTwentyTicks).
		"cron": {build(qflow.NewFlow("lim_cron").
			Step("tick", qflow.StepDef{TakesInput: true})), 0},
	}
}

// limitsHandlers: root returns its input (a JSON array); the others
// record their run in limits_log, taking sc.took.
func limitsHandlers(sc limitsScenario, log *pgxpool.Pool) map[string]qflow.Handler {
	pid := os.Getpid()
	h := map[string]qflow.Handler{}
	for _, s := range sc.def.Steps {
		if s.Slug == "root" {
			h[s.Slug] = func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
				var in struct{ Run json.RawMessage }
				if err := json.Unmarshal(t.Input, &in); err != nil {
					return nil, qflow.Permanent(err)
				}
				return in.Run, nil
			}
			continue
		}
		h[s.Slug] = func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			began := time.Now()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(sc.took):
			}
			var el struct{ Customer string }
			_ = json.Unmarshal(t.Input, &el)
			if _, err := log.Exec(context.WithoutCancel(ctx), `INSERT INTO limits_log (step, key, run_id, idx, attempt, pid, began, ended)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, t.Step, el.Customer, t.RunID, t.Index, t.Attempt, pid, began, time.Now()); err != nil {
				return nil, err
			}
			return json.RawMessage(`1`), nil
		}
	}
	return h
}

// TestLimitsWorkerChild is a worker process of the limits tests; it does
// nothing unless run by one (QFLOW_LIMITS_CHILD names the scenario). It
// runs until SIGTERM, then stops gracefully.
func TestLimitsWorkerChild(t *testing.T) {
	name := os.Getenv(envLimitsChild)
	if name == "" {
		t.Skip("a worker process of the limits tests")
	}
	ctx, stop := signalContext()
	defer stop()
	sc := limitsScenarios()[name]
	pool, err := pgxpool.New(ctx, os.Getenv(envLimitsURL))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	slots, _ := strconv.Atoi(os.Getenv(envLimitsSlots))
	w := qflow.NewWorker(pool, &qflow.WorkerOptions{Concurrency: slots, PollInterval: 200 * time.Millisecond, Logger: quiet()})
	if err := w.Register(sc.def, limitsHandlers(sc, pool)); err != nil {
		t.Fatal(err)
	}
	if name == "cron" {
		declareCronChild(t, w)
	}
	fmt.Println("ready")
	if err := w.Run(ctx); err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
}

func signalContext() (context.Context, func()) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM)
}

// startLimitWorkers starts n worker processes of scenario name with slots
// handler slots each, and stops them (gracefully) when the test ends.
func startLimitWorkers(t *testing.T, e *env, name string, n, slots int) {
	t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS limits_log (
		step text, key text, run_id uuid, idx integer, attempt integer, pid integer, began timestamptz, ended timestamptz)`); err != nil {
		t.Fatal(err)
	}
	// Defined here too, so runs can start by slug before the workers do.
	if _, err := e.client.DefineFlow(context.Background(), limitsScenarios()[name].def); err != nil {
		t.Fatal(err)
	}
	for range n {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLimitsWorkerChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envLimitsChild+"="+name, envLimitsURL+"="+e.db.URL, envLimitsSlots+"="+strconv.Itoa(slots))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			ok := false
			for sc.Scan() {
				if sc.Text() == "ready" && !ok {
					ok = true
					ready <- true
				}
			}
			if !ok {
				ready <- false
			}
			_, _ = io.Copy(io.Discard, out)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker process: %v\n%s", err, stderr.String())
				}
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("worker process did not stop\n%s", stderr.String())
			}
		})
		select {
		case ok := <-ready:
			if !ok {
				t.Fatalf("worker process failed to start:\n%s", stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("worker process not ready after 30s")
		}
	}
}

// span is one task's run as its handler recorded it.
type span struct {
	step, key    string
	run          uuid.UUID
	idx          int
	attempt      int
	pid          int
	began, ended time.Time
}

func limitsLog(t *testing.T, e *env) []span {
	t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT step, key, run_id, idx, attempt, pid, began, ended FROM limits_log ORDER BY began`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []span
	for rows.Next() {
		var s span
		if err := rows.Scan(&s.step, &s.key, &s.run, &s.idx, &s.attempt, &s.pid, &s.began, &s.ended); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// peak is the most spans running at one instant (one that ends at the
// instant another begins does not overlap it).
func peak(spans []span) int {
	type ev struct {
		at time.Time
		d  int
	}
	var evs []ev
	for _, s := range spans {
		evs = append(evs, ev{s.began, +1}, ev{s.ended, -1})
	}
	slices.SortFunc(evs, func(a, b ev) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.d - b.d // ends first
	})
	n, top := 0, 0
	for _, e := range evs {
		n += e.d
		top = max(top, n)
	}
	return top
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func filter(spans []span, keep func(span) bool) []span {
	var out []span
	for _, s := range spans {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// startAndWait starts one run per input of flow slug and waits for all.
func startLimitedRuns(t *testing.T, e *env, slug string, inputs []any, d time.Duration) {
	t.Helper()
	ctx := ctxT(t, d)
	ids, err := e.client.StartRuns(ctx, slug, inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := e.client.WaitRun(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// checkOneAttempt: every task ran once (a task held back by a limit costs
// no attempt) and none failed.
func checkOneAttempt(t *testing.T, e *env, slug string) {
	t.Helper()
	var n, bad int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE t.attempts <> 1 OR t.status <> 'completed')
		FROM qflow.step_tasks t JOIN qflow.runs r ON r.id = t.run_id WHERE r.flow_slug = $1`, slug).Scan(&n, &bad); err != nil {
		t.Fatal(err)
	}
	if n == 0 || bad != 0 {
		t.Errorf("%d tasks, %d of them with more than one attempt or not completed", n, bad)
	}
}

// TestConcurrencyLimitAcrossWorkers: with 4 worker processes of 3 slots,
// no more than 2 tasks of a step with Concurrency 2 ever run at once, and
// the step beside it, without a limit, is not held up behind it.
func TestConcurrencyLimitAcrossWorkers(t *testing.T) {
	e := newEnv(t)
	startLimitWorkers(t, e, "conc", 4, 3)
	els := make([]int, 12)
	began := time.Now()
	startLimitedRuns(t, e, "lim_conc", []any{els, els, els}, 2*time.Minute)
	took := time.Since(began)
	spans := limitsLog(t, e)
	limited := filter(spans, func(s span) bool { return s.step == "limited" })
	free := filter(spans, func(s span) bool { return s.step == "free" })
	if len(limited) != 36 || len(free) != 36 {
		t.Fatalf("%d limited and %d free tasks ran, want 36 each", len(limited), len(free))
	}
	if p := peak(limited); p > 2 {
		t.Errorf("%d tasks of the step with Concurrency 2 ran at once", p)
	}
	pids, freePids := map[int]bool{}, map[int]bool{}
	var lastLimitedStart, lastFreeEnd time.Time
	for _, s := range limited {
		pids[s.pid] = true
		lastLimitedStart = later(lastLimitedStart, s.began)
	}
	for _, s := range free {
		freePids[s.pid] = true
		lastFreeEnd = later(lastFreeEnd, s.ended)
	}
	// The free step has 10 slots to the limited step's 2: it is done long
	// before the limited step's last task starts, unless the limit held it.
	if !lastFreeEnd.Before(lastLimitedStart) {
		t.Errorf("the step without a limit finished at %s, after the limited step's last start at %s", lastFreeEnd, lastLimitedStart)
	}
	checkOneAttempt(t, e, "lim_conc")
	t.Logf("36 limited tasks of 40ms at 2 at once (ideal %s) in %s on %d worker processes (the free step's on %d); peak %d; free step done %s before the last limited start",
		18*40*time.Millisecond, took, len(pids), len(freePids), peak(limited), lastLimitedStart.Sub(lastFreeEnd))
}

// TestFlowConcurrencyLimit: a flow's own Concurrency caps its tasks of all
// steps together, across worker processes.
func TestFlowConcurrencyLimit(t *testing.T) {
	e := newEnv(t)
	startLimitWorkers(t, e, "flow", 3, 4)
	els := make([]int, 8)
	startLimitedRuns(t, e, "lim_flow", []any{els, els}, 2*time.Minute)
	spans := limitsLog(t, e)
	if len(spans) != 32 {
		t.Fatalf("%d tasks ran, want 32", len(spans))
	}
	if p := peak(spans); p > 3 {
		t.Errorf("%d tasks of the flow with Concurrency 3 ran at once", p)
	}
	checkOneAttempt(t, e, "lim_flow")
	t.Logf("peak %d of 3", peak(spans))
}

// TestConcurrencyLimitPerKey: 200 tasks over 20 customers, at most 2 at
// once per customer, on 4 worker processes of 10 slots (room for every
// customer's 2 at once): the limit holds per key at every instant, and
// customers do not wait for each other.
func TestConcurrencyLimitPerKey(t *testing.T) {
	e := newEnv(t)
	startLimitWorkers(t, e, "key", 4, 10)
	type el struct {
		Customer string `json:"customer"`
		N        int    `json:"n"`
	}
	var els []el
	for i := range 200 {
		els = append(els, el{Customer: fmt.Sprintf("c%02d", i%20), N: i})
	}
	began := time.Now()
	startLimitedRuns(t, e, "lim_key", []any{els}, 2*time.Minute)
	took := time.Since(began)
	spans := limitsLog(t, e)
	if len(spans) != 200 {
		t.Fatalf("%d tasks ran, want 200", len(spans))
	}
	byKey := map[string][]span{}
	for _, s := range spans {
		byKey[s.key] = append(byKey[s.key], s)
	}
	if len(byKey) != 20 {
		t.Fatalf("%d keys, want 20", len(byKey))
	}
	top := 0
	for k, ss := range byKey {
		p := peak(ss)
		top = max(top, p)
		if p > 2 {
			t.Errorf("customer %s: %d tasks at once", k, p)
		}
	}
	// Not one customer after another: many keys ran at once.
	if all := peak(spans); all <= 2 {
		t.Errorf("at most %d tasks ran at once over all customers: the keys were served one by one", all)
	}
	checkOneAttempt(t, e, "lim_key")
	ideal := 5 * 50 * time.Millisecond // 10 tasks a customer, 2 at once
	var first, last time.Time
	for _, s := range spans {
		if first.IsZero() || s.began.Before(first) {
			first = s.began
		}
		last = later(last, s.ended)
	}
	t.Logf("200 tasks of 50ms, 20 customers at 2 at once: first start to last end %s (ideal %s, %.2fx), run %s; peak %d in all, %d per customer",
		last.Sub(first), ideal, float64(last.Sub(first))/float64(ideal), took, peak(spans), top)

	// For scale: the same tasks on the same workers without a limit (40
	// slots for 200 tasks: 5 rounds too).
	free := newEnv(t)
	startLimitWorkers(t, free, "keyfree", 4, 10)
	began = time.Now()
	startLimitedRuns(t, free, "lim_keyfree", []any{els}, 2*time.Minute)
	t.Logf("without the limit: run %s", time.Since(began))
}

// TestRateLimitAcrossWorkers: with Rate 20/s and Burst 5 over 4 worker
// processes, no 5-second window sees more than 100 + 5 starts (the
// claims' clock), and no task held back costs an attempt.
func TestRateLimitAcrossWorkers(t *testing.T) {
	e := newEnv(t)
	startLimitWorkers(t, e, "rate", 4, 8)
	began := time.Now()
	startLimitedRuns(t, e, "lim_rate", []any{make([]int, 130)}, 2*time.Minute)
	took := time.Since(began)
	rows, err := e.db.Pool.Query(context.Background(), `SELECT t.started_at FROM qflow.step_tasks t
		JOIN qflow.steps st ON st.flow_id = t.flow_id AND st.idx = t.step_idx
		WHERE st.slug = 'call' ORDER BY t.started_at`)
	if err != nil {
		t.Fatal(err)
	}
	var starts []time.Time
	for rows.Next() {
		var at time.Time
		if err := rows.Scan(&at); err != nil {
			t.Fatal(err)
		}
		starts = append(starts, at)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(starts) != 130 {
		t.Fatalf("%d starts, want 130", len(starts))
	}
	worst := func(times []time.Time, w time.Duration) int {
		top := 0
		for i := range times {
			j := i
			for j < len(times) && times[j].Sub(times[i]) < w {
				j++
			}
			top = max(top, j-i)
		}
		return top
	}
	if n := worst(starts, 5*time.Second); n > 105 {
		t.Errorf("%d starts within 5s; at most 100 + burst 5 allowed", n)
	}
	if n := worst(starts, time.Second); n > 25 {
		t.Errorf("%d starts within 1s; at most 20 + burst 5 allowed", n)
	}
	checkOneAttempt(t, e, "lim_rate")
	var handler []time.Time
	for _, s := range limitsLog(t, e) {
		handler = append(handler, s.began)
	}
	slices.SortFunc(handler, time.Time.Compare)
	t.Logf("130 tasks at 20/s burst 5: %s (ideal %s); most claims in 5s %d, in 1s %d; most handler starts in 5s %d, in 1s %d",
		took, time.Duration(125)*50*time.Millisecond, worst(starts, 5*time.Second), worst(starts, time.Second),
		worst(handler, 5*time.Second), worst(handler, time.Second))
}

// TestConcurrencyLimitLeaseExpiry: a task holding a limit's only place
// whose worker dies keeps the place until its lease expires, and not a
// moment longer: then the place is free again, and the task itself runs
// again with its next attempt.
func TestConcurrencyLimitLeaseExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, time.Minute)
	def, err := qflow.NewFlow("lim_lease").
		Step("root", qflow.StepDef{TakesInput: true}).
		MapStep("one", "root", qflow.StepOptions{Concurrency: 1}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	root := func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
		return json.RawMessage(`[1,2,3,4]`), nil
	}
	hung := make(chan struct{})
	var once sync.Once
	dying := map[string]qflow.Handler{"root": root, "one": func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
		once.Do(func() { close(hung) })
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	lease := 2 * time.Second
	a := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Concurrency: 4, Lease: lease, Logger: quiet()})
	if err := a.Register(def, dying); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(context.Background()) }()
	run, err := e.client.StartFlow(ctx, def, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := run.ID
	select {
	case <-hung:
	case <-ctx.Done():
		t.Fatal("the first task never started")
	}
	var held int
	var claimed time.Time
	if err := e.db.Pool.QueryRow(ctx, `SELECT task_index, started_at FROM qflow.step_tasks WHERE run_id = $1 AND status = 'started'`, id).Scan(&held, &claimed); err != nil {
		t.Fatal(err)
	}
	a.Abandon() // the worker dies holding the place
	<-aDone
	e.startWorker(def, map[string]qflow.Handler{"root": root, "one": func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
		return json.RawMessage(`1`), nil
	}}, &qflow.WorkerOptions{Concurrency: 4, Lease: lease})
	if _, err := e.client.WaitRun(ctx, id); err != nil {
		t.Fatal(err)
	}
	rows, err := e.db.Pool.Query(ctx, `SELECT t.task_index, t.attempts, t.started_at FROM qflow.step_tasks t WHERE t.run_id = $1 AND t.step_idx = 1 ORDER BY t.task_index`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var idx, attempts int
		var at time.Time
		if err := rows.Scan(&idx, &attempts, &at); err != nil {
			t.Fatal(err)
		}
		// Nothing started while the dead worker's lease ran.
		if at.Before(claimed.Add(lease)) {
			t.Errorf("task %d started %s after the dead worker's claim, within its %s lease", idx, at.Sub(claimed), lease)
		}
		if want := map[bool]int{true: 2, false: 1}[idx == held]; attempts != want {
			t.Errorf("task %d: %d attempts, want %d", idx, attempts, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestLimitSetOnBacklog: a limit defined on a flow version that already
// has queued tasks holds them too; and Prune clears the gates no task
// holds any more.
func TestLimitSetOnBacklog(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, time.Minute)
	flow := func(o qflow.StepOptions) qflow.FlowDef {
		def, err := qflow.NewFlow("lim_later").MapStep("work", "", o).Build()
		if err != nil {
			t.Fatal(err)
		}
		return def
	}
	free, limited := flow(qflow.StepOptions{}), flow(qflow.StepOptions{Concurrency: 1, Key: ".k"})
	if free.ShapeHash() != limited.ShapeHash() {
		t.Fatal("a limit changed the shape hash")
	}
	// Without a limit and without a worker, the map's tasks queue up.
	run, err := e.client.StartFlow(ctx, free, json.RawMessage(`[{"k":"a"},{"k":"a"},{"k":"a"},{"k":"a"},{"k":"b"},{"k":"b"},{"k":"b"},{"k":"b"}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var spans []span
	work := func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
		s := span{began: time.Now()}
		time.Sleep(20 * time.Millisecond)
		var el struct{ K string }
		_ = json.Unmarshal(t.Input, &el)
		s.key, s.ended = el.K, time.Now()
		mu.Lock()
		spans = append(spans, s)
		mu.Unlock()
		return json.RawMessage(`1`), nil
	}
	// The same version, now with a limit: its queued tasks are held by it.
	e.startWorker(limited, map[string]qflow.Handler{"work": work}, &qflow.WorkerOptions{Concurrency: 8})
	if _, err := run.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]span{}
	for _, s := range spans {
		byKey[s.key] = append(byKey[s.key], s)
	}
	for k, ss := range byKey {
		if p := peak(ss); p > 1 {
			t.Errorf("key %s: %d at once, want 1", k, p)
		}
	}
	if len(spans) != 8 || len(byKey) != 2 {
		t.Errorf("%d tasks of %d keys ran, want 8 of 2", len(spans), len(byKey))
	}
	// One version, whose stored definition shows the limits in force.
	var versions int
	var shown string
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*), max(definition->'steps'->0->'options'->>'key') FROM qflow.flows WHERE slug = 'lim_later'`).Scan(&versions, &shown); err != nil {
		t.Fatal(err)
	}
	if versions != 1 || shown != ".k" {
		t.Errorf("%d versions, stored key %q; want 1 version showing key .k", versions, shown)
	}
	var gates int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.gates`).Scan(&gates); err != nil || gates != 2 {
		t.Errorf("%d gates (%v), want 2 (keys a and b)", gates, err)
	}
	if _, err := e.client.Prune(ctx, qflow.PruneOptions{OlderThan: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.gates`).Scan(&gates); err != nil || gates != 0 {
		t.Errorf("%d gates (%v) after Prune, want 0", gates, err)
	}
}
