package goals_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/goals"
)

func quiet() *slog.Logger {
	if os.Getenv("QFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newClient(t *testing.T) *runtime.Client {
	t.Helper()
	db := pgtest.New(t)
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet()})
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// joinHandlers: "work" returns its id and its dependencies' outputs, sorted.
var joinHandlers = goals.Handlers{"work": goals.HandlerFunc(func(_ context.Context, t *goals.TaskRun) (string, error) {
	var parts []string
	for id, raw := range t.Deps {
		var s string
		_ = json.Unmarshal(raw, &s)
		parts = append(parts, id+"="+s)
	}
	sort.Strings(parts)
	out := t.Task.ID
	if len(t.Input) > 0 {
		out += string(t.Input)
	}
	if len(parts) > 0 {
		out += "(" + strings.Join(parts, ",") + ")"
	}
	return out, nil
})}

func TestComposeRunsTheFlattenedPlan(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	dec := table{
		"app": {
			{ID: "design", Kind: "work", Input: json.RawMessage(`1`)},
			{ID: "auth", SubGoal: sub("Authentication"), DependsOn: []string{"design"}},
			{ID: "ship", Kind: "work", DependsOn: []string{"auth"}},
		},
		"auth": {
			{ID: "schema", Kind: "work"},
			{ID: "login", Kind: "work", DependsOn: []string{"schema"}},
			{ID: "tokens", Kind: "work", DependsOn: []string{"schema"}},
		},
	}
	var mu sync.Mutex
	var types []string
	opts := &goals.Options{Logger: quiet(), OnEvent: func(ev goals.Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Type == "task_completed" {
			types = append(types, ev.Type+":"+ev.Task)
		} else if ev.Terminal() {
			types = append(types, ev.Type)
		}
	}}
	res, err := goals.ComposeFromGoal(ctx, c, goals.Goal{ID: "app"}, dec, joinHandlers, opts)
	if err != nil {
		t.Fatal(err)
	}
	str := func(raw json.RawMessage) string {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("output %s: %v", raw, err)
		}
		return s
	}
	got := map[string]string{}
	for id, raw := range res.Outputs {
		got[id] = str(raw)
	}
	want := map[string]string{
		"design":      "design1",
		"auth/schema": "auth/schema(design=design1)",
		"auth/login":  "auth/login(auth/schema=auth/schema(design=design1))",
		"auth/tokens": "auth/tokens(auth/schema=auth/schema(design=design1))",
		"ship":        "ship(auth/login=auth/login(auth/schema=auth/schema(design=design1)),auth/tokens=auth/tokens(auth/schema=auth/schema(design=design1)))",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("outputs (-want +got):\n%s", diff)
	}
	if str(res.Final) != want["ship"] {
		t.Fatalf("final %s", res.Final)
	}
	mu.Lock()
	sort.Strings(types)
	wantEvents := []string{"task_completed:auth/login", "task_completed:auth/schema", "task_completed:auth/tokens",
		"task_completed:design", "task_completed:ship", "workflow_completed"}
	if diff := cmp.Diff(wantEvents, types); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	mu.Unlock()

	// The same plan again: the same flow version; events on a channel.
	ch := make(chan goals.Event, 100)
	res2, err := goals.ComposeFromGoal(ctx, c, goals.Goal{ID: "app"}, dec, joinHandlers, &goals.Options{Logger: quiet(), Events: ch})
	if err != nil {
		t.Fatal(err)
	}
	if res2.FlowVersion != res.FlowVersion || res2.RunID == res.RunID {
		t.Fatalf("versions %d, %d; runs %s, %s", res.FlowVersion, res2.FlowVersion, res.RunID, res2.RunID)
	}
	flows, err := c.ListFlows(ctx)
	if err != nil || len(flows) != 1 {
		t.Fatalf("flows %v, %v", flows, err)
	}
	var last goals.Event
	for len(ch) > 0 {
		last = <-ch
	}
	if last.Type != "workflow_completed" || last.RunID != res2.RunID {
		t.Fatalf("last event %+v", last)
	}
}

func countRows(t *testing.T, c *runtime.Client, table string) int {
	t.Helper()
	var n int
	if err := c.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFailingDecomposerStartsNothing(t *testing.T) {
	c := newClient(t)
	boom := errors.New("planner service down")
	var calls atomic.Int32
	handlerCalled := goals.Handlers{"work": func(context.Context, *goals.TaskRun) (json.RawMessage, error) {
		calls.Add(1)
		return nil, nil
	}}
	failing := goals.DecomposerFunc(func(ctx context.Context, g goals.Goal, depth int) ([]goals.TaskSpec, error) {
		if depth == 0 {
			return []goals.TaskSpec{{ID: "a", Kind: "work"}, {ID: "s", SubGoal: sub("deeper")}}, nil
		}
		return nil, boom
	})
	_, err := goals.ComposeFromGoal(ctxT(t, 10*time.Second), c, goals.Goal{ID: "g"}, failing, handlerCalled, &goals.Options{Logger: quiet()})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	slow := goals.DecomposerFunc(func(ctx context.Context, g goals.Goal, depth int) ([]goals.TaskSpec, error) {
		if depth == 0 {
			return []goals.TaskSpec{{ID: "a", Kind: "work"}, {ID: "s", SubGoal: sub("deeper")}}, nil
		}
		cancel() // the caller gives up while a sub-goal is being decomposed
		<-ctx.Done()
		return nil, ctx.Err()
	})
	_, err = goals.ComposeFromGoal(ctx, c, goals.Goal{ID: "g"}, slow, handlerCalled, &goals.Options{Logger: quiet()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if n := countRows(t, c, "qflow.flows") + countRows(t, c, "qflow.runs"); n != 0 || calls.Load() != 0 {
		t.Fatalf("%d flows and runs, %d handler calls after failed decompositions", n, calls.Load())
	}
}

func TestComposeManyWithOneFailingGoal(t *testing.T) {
	c := newClient(t)
	dec := goals.DecomposerFunc(func(_ context.Context, g goals.Goal, _ int) ([]goals.TaskSpec, error) {
		kind := "work"
		if g.ID == "bad" {
			kind = "fail"
		}
		return []goals.TaskSpec{{ID: "one", Kind: "work"}, {ID: "two", Kind: kind, DependsOn: []string{"one"}}}, nil
	})
	hs := goals.Handlers{
		"work": joinHandlers["work"],
		"fail": func(context.Context, *goals.TaskRun) (json.RawMessage, error) {
			return nil, runtime.Permanent(errors.New("no such library"))
		},
	}
	gs := []goals.Goal{{ID: "first"}, {ID: "bad"}, {ID: "third"}}
	results, err := goals.ComposeMany(ctxT(t, 30*time.Second), c, gs, dec, hs, &goals.Options{Logger: quiet()})
	if !errors.Is(err, runtime.ErrRunFailed) || !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("error %v", err)
	}
	for i, r := range results {
		if r.Goal.ID != gs[i].ID {
			t.Fatalf("result %d is for %q", i, r.Goal.ID)
		}
		if gs[i].ID == "bad" {
			var re *runtime.RunError
			if !errors.As(r.Err, &re) || re.Step != "two" || !strings.Contains(re.Message, "no such library") {
				t.Fatalf("bad goal: %v", r.Err)
			}
			continue
		}
		if r.Err != nil {
			t.Fatalf("goal %q: %v", gs[i].ID, r.Err)
		}
		if got := string(r.Final); got != `"two(one=one)"` {
			t.Fatalf("goal %q: final %s", gs[i].ID, got)
		}
	}
}

// flaky fails the first attempt of every task whose static input says so.
func flakyHandlers(sleep time.Duration) goals.Handlers {
	return goals.Handlers{"work": func(ctx context.Context, t *goals.TaskRun) (json.RawMessage, error) {
		if string(t.Input) == `"flaky"` && t.Attempt == 1 {
			return nil, errors.New("transient: connection reset")
		}
		if string(t.Input) == `"hang"` && t.Attempt == 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		select {
		case <-time.After(sleep):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return json.RawMessage(`"ok"`), nil
	}}
}

var learnDec = table{"learn": {
	{ID: "steady", Kind: "work"},
	{ID: "flaky", Kind: "work", Input: json.RawMessage(`"flaky"`), DependsOn: []string{"steady"}},
	{ID: "hangs", Kind: "work", Input: json.RawMessage(`"hang"`)},
}}

func TestStatisticsRecordedAndReadBack(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	opts := &goals.Options{Logger: quiet(), StepOptions: runtime.StepOptions{BaseDelay: 10 * time.Millisecond, Timeout: 300 * time.Millisecond}}
	for range 2 {
		if _, err := goals.ComposeFromGoal(ctx, c, goals.Goal{ID: "learn"}, learnDec, flakyHandlers(20*time.Millisecond), opts); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := c.StepStats(ctx, "goal_learn")
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 3 {
		t.Fatalf("stats %+v", stats)
	}
	by := map[string]runtime.StepStats{}
	for _, s := range stats {
		by[s.Step] = s
	}
	type counts struct{ Runs, Tasks, Successes, Attempts, FailedAttempts, RetriedOK, Timeouts int64 }
	get := func(s runtime.StepStats) counts {
		return counts{s.Runs, s.Tasks, s.Successes, s.Attempts, s.FailedAttempts, s.RetriedOK, s.Timeouts}
	}
	want := map[string]counts{
		"steady": {2, 2, 2, 2, 0, 0, 0},
		"flaky":  {2, 2, 2, 4, 2, 2, 0},
		"hangs":  {2, 2, 2, 4, 2, 2, 2},
	}
	for step, w := range want {
		if diff := cmp.Diff(w, get(by[step])); diff != "" {
			t.Errorf("step %s (-want +got):\n%s", step, diff)
		}
		if s := by[step]; s.Samples != 2 || s.P50MS < 15 || s.P99MS > 2000 || s.Kind != "work" {
			t.Errorf("step %s: %+v", step, s)
		}
	}
	ks, err := c.KindStats(ctx, "work")
	if err != nil || len(ks) != 1 {
		t.Fatalf("kind stats %+v, %v", ks, err)
	}
	if k := ks[0]; k.Runs != 2 || k.Tasks != 6 || k.Samples != 6 || k.Timeouts != 2 {
		t.Fatalf("kind stats %+v", k)
	}
	// Recording is idempotent.
	if n, err := c.RecordRunStats(ctx, mustLastRun(t, c), nil); n != 0 || err != nil {
		t.Fatalf("re-recording: %d, %v", n, err)
	}
}

func mustLastRun(t *testing.T, c *runtime.Client) [16]byte {
	runs, err := c.ListRuns(context.Background(), runtime.ListRunsParams{Limit: 1})
	if err != nil || len(runs) == 0 {
		t.Fatal(runs, err)
	}
	return runs[0].ID
}

func TestBasicLevelTunesFromStatistics(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	opts := &goals.Options{Logger: quiet(), StepOptions: runtime.StepOptions{BaseDelay: 10 * time.Millisecond, Timeout: 300 * time.Millisecond}}
	goal := goals.Goal{ID: "learn"}
	// Before any run: nothing to learn from.
	p, err := goals.PlanGoal(ctx, c, goal, learnDec, nil, &goals.Options{Level: goals.LevelBasic})
	if err != nil || len(p.Tuning) != 0 {
		t.Fatalf("tuning before learning: %v, %v", p.Tuning, err)
	}
	for range 3 {
		if _, err := goals.ComposeFromGoal(ctx, c, goal, learnDec, flakyHandlers(10*time.Millisecond), opts); err != nil {
			t.Fatal(err)
		}
	}
	basic := *opts
	basic.Level = goals.LevelBasic
	basic.Learning = goals.LearnOptions{TimeoutFloor: 50 * time.Millisecond, TimeoutFactor: 4}
	p, err = goals.PlanGoal(ctx, c, goal, learnDec, nil, &basic)
	if err != nil {
		t.Fatal(err)
	}
	stats, _ := c.StepStats(ctx, "goal_learn")
	for i, tk := range p.Tasks {
		tu := p.Tuning[tk.ID]
		var st runtime.StepStats
		for _, s := range stats {
			if s.Step == tk.Slug {
				st = s
			}
		}
		wantTimeout := time.Duration(st.P99MS * 4 * float64(time.Millisecond))
		if tu.Source != "step" || tu.Timeout < max(wantTimeout, 50*time.Millisecond) || tu.Timeout > 2*max(wantTimeout, 50*time.Millisecond) {
			t.Errorf("%s: tuning %+v from p99 %.1fms", tk.ID, tu, st.P99MS)
		}
		if got := p.Def.Steps[i].Options.Timeout; got != tu.Timeout {
			t.Errorf("%s: step timeout %s, tuning %s", tk.ID, got, tu.Timeout)
		}
		wantRetries := 0 // steady: never failed, keeps the default
		if tk.ID != "steady" {
			// half of the attempts failed and retries recovered them:
			// 0.5^n < 1/1000 needs n = 10 attempts, capped at 8 (7 retries)
			wantRetries = 7
		}
		if tu.Retries != wantRetries || p.Def.Steps[i].Options.Retries != wantRetries {
			t.Errorf("%s: retries %d (step %d), want %d", tk.ID, tu.Retries, p.Def.Steps[i].Options.Retries, wantRetries)
		}
	}
	// The tuned plan is a new version that runs, and a hang now costs the
	// learned timeout, not the configured 300ms.
	res, err := goals.RunPlan(ctx, c, p, flakyHandlers(10*time.Millisecond), &basic)
	if err != nil {
		t.Fatal(err)
	}
	if res.FlowVersion != 2 {
		t.Fatalf("tuned plan ran as version %d", res.FlowVersion)
	}
	// Kind statistics carry over to another plan with the same kind.
	other := table{"other": {{ID: "fresh", Kind: "work"}}}
	p2, err := goals.PlanGoal(ctx, c, goals.Goal{ID: "other"}, other, nil, &basic)
	if err != nil {
		t.Fatal(err)
	}
	if tu := p2.Tuning["fresh"]; tu.Source != "kind" || tu.Timeout == 0 {
		t.Fatalf("new plan's tuning %+v", tu)
	}
}

func TestAdvancedLevelClaimsCriticalPathFirst(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 40*time.Second)
	dec := table{"cp": {
		{ID: "side1", Kind: "short"}, {ID: "side2", Kind: "short"}, {ID: "side3", Kind: "short"},
		{ID: "side4", Kind: "short"}, {ID: "side5", Kind: "short"},
		{ID: "c1", Kind: "long"},
		{ID: "c2", Kind: "long", DependsOn: []string{"c1"}},
		{ID: "c3", Kind: "long", DependsOn: []string{"c2"}},
	}}
	var mu sync.Mutex
	var order []string
	sleeper := func(d time.Duration) goals.Handler {
		return func(ctx context.Context, t *goals.TaskRun) (json.RawMessage, error) {
			mu.Lock()
			order = append(order, t.Task.ID)
			mu.Unlock()
			time.Sleep(d)
			return json.RawMessage(`1`), nil
		}
	}
	hs := goals.Handlers{"short": sleeper(5 * time.Millisecond), "long": sleeper(40 * time.Millisecond)}
	run := func(level goals.Level) []string {
		mu.Lock()
		order = nil
		mu.Unlock()
		res, err := goals.ComposeFromGoal(ctx, c, goals.Goal{ID: "cp"}, dec, hs, &goals.Options{Logger: quiet(), Concurrency: 1, Level: level})
		if err != nil {
			t.Fatal(err)
		}
		if level >= goals.LevelAdvanced && !res.PrioritiesApplied {
			t.Fatal("priorities not applied")
		}
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), order...)
	}
	off := run(goals.LevelOff)
	if diff := cmp.Diff([]string{"side1", "side2", "side3", "side4", "side5", "c1", "c2", "c3"}, off); diff != "" {
		t.Fatalf("level off start order (-want +got):\n%s", diff)
	}
	run(goals.LevelOff)
	run(goals.LevelOff)
	adv := run(goals.LevelAdvanced)
	// c1 is claimed first. A chain task becomes ready when its predecessor
	// is settled; the worker may refill the freed slot a moment before
	// that, so at most one side task can slip in before each of c2 and c3.
	if len(adv) != 8 || adv[0] != "c1" || slices.Index(adv, "c3") > 4 {
		t.Fatalf("advanced start order %v: want c1 first and c3 among the first five", adv)
	}
}

func TestWholeRunTimeoutCancelsTheRun(t *testing.T) {
	c := newClient(t)
	hang := goals.Handlers{"work": func(ctx context.Context, _ *goals.TaskRun) (json.RawMessage, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	began := time.Now()
	res, err := goals.ComposeFromGoal(ctxT(t, 20*time.Second), c, goals.Goal{ID: "slow"}, table{"slow": {{ID: "wait", Kind: "work"}}}, hang,
		&goals.Options{Logger: quiet(), Timeout: 300 * time.Millisecond})
	if !errors.Is(err, runtime.ErrRunCancelled) || res.RunID == [16]byte{} {
		t.Fatalf("error %v, result %+v", err, res)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("took %s", d)
	}
}
