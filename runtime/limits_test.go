package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	qflow "github.com/quantumflow/qflow/runtime"
)

func nested(depth int) json.RawMessage {
	return json.RawMessage(strings.Repeat("[", depth) + strings.Repeat("]", depth))
}

// TestInputLimits: inputs over a limit, or that PostgreSQL cannot store,
// are refused before anything is written, with an error that says why.
func TestInputLimits(t *testing.T) {
	e := newEnv(t)
	small := qflow.NewClient(e.db.Pool, &qflow.ClientOptions{Logger: quiet(), Limits: qflow.Limits{MaxInputBytes: 100, MaxJSONDepth: 4}})
	t.Cleanup(small.Close)
	def := single("limited", qflow.StepOptions{})
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", qflow.DefaultMaxInputBytes)
	cases := []struct {
		name    string
		client  *qflow.Client
		input   any
		want    []error
		wantMsg string
	}{
		{"default size", e.client, big, []error{qflow.ErrBadInput, qflow.ErrTooLarge}, "the limit is 4194304"},
		{"default size raw", e.client, json.RawMessage(`"` + big + `"`), []error{qflow.ErrBadInput, qflow.ErrTooLarge}, "MaxInputBytes"},
		{"configured size", small, strings.Repeat("y", 200), []error{qflow.ErrBadInput, qflow.ErrTooLarge}, "the limit is 100"},
		{"default depth", e.client, nested(qflow.DefaultMaxJSONDepth + 1), []error{qflow.ErrBadInput, qflow.ErrTooLarge}, "deeper than 256"},
		{"configured depth", small, nested(5), []error{qflow.ErrBadInput, qflow.ErrTooLarge}, "deeper than 4"},
		{"beyond go's decoder", e.client, nested(20000), []error{qflow.ErrBadInput, qflow.ErrTooLarge}, "deeper than 256"},
		{"nul escape", e.client, json.RawMessage(`{"a":"\u0000"}`), []error{qflow.ErrBadInput}, `\u0000`},
		{"lone surrogate", e.client, json.RawMessage(`["\ud800"]`), []error{qflow.ErrBadInput}, "surrogate"},
		{"invalid utf8", e.client, []byte("\"\xff\""), []error{qflow.ErrBadInput}, "UTF-8"},
		{"huge exponent", e.client, json.RawMessage(`1e200000`), []error{qflow.ErrBadInput}, "exponent"},
		{"tiny exponent", e.client, json.RawMessage(`{"x":[1E-20000]}`), []error{qflow.ErrBadInput}, "exponent"},
		{"long number", e.client, json.RawMessage(strings.Repeat("9", 2000)), []error{qflow.ErrBadInput}, "number of 2000"},
	}
	for _, c := range cases {
		_, err := c.client.StartRun(ctx, "limited", c.input, nil)
		if err == nil {
			t.Errorf("%s: StartRun accepted the input", c.name)
			continue
		}
		for _, w := range c.want {
			if !errors.Is(err, w) {
				t.Errorf("%s: error %v does not match %v", c.name, err, w)
			}
		}
		if msg := err.Error(); !strings.Contains(msg, c.wantMsg) || len(msg) > 300 {
			t.Errorf("%s: error %.300q; want a short message containing %q", c.name, msg, c.wantMsg)
		}
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 0)
	// At the limits: accepted.
	for _, in := range []any{nested(qflow.DefaultMaxJSONDepth), strings.Repeat("z", qflow.DefaultMaxInputBytes-2), json.RawMessage(`[1e1000, -1e-1000, "\ud83d\ude00"]`)} {
		if _, err := e.client.StartRun(ctx, "limited", in, nil); err != nil {
			t.Errorf("StartRun at the limit: %.300v", err)
		}
	}
	unlimited := qflow.NewClient(e.db.Pool, &qflow.ClientOptions{Logger: quiet(), Limits: qflow.Limits{MaxInputBytes: -1}})
	t.Cleanup(unlimited.Close)
	if _, err := unlimited.StartRun(ctx, "limited", big+"!", nil); err != nil {
		t.Errorf("StartRun with no size limit: %.300v", err)
	}
}

// TestOutputLimits: an output over the limit, or one PostgreSQL cannot
// store, fails its task permanently with a clear error; the run ends, and
// other tasks finishing in the same batch are not affected.
func TestOutputLimits(t *testing.T) {
	e := newEnv(t)
	def := qflow.FlowDef{Slug: "outs", Steps: []qflow.StepDef{{Slug: "make", Map: true, Options: qflow.StepOptions{Retries: 2}}}}
	var calls atomic.Int32
	e.startWorker(def, map[string]qflow.Handler{"make": func(_ context.Context, task *qflow.Task) (json.RawMessage, error) {
		calls.Add(1)
		var kind string
		_ = json.Unmarshal(task.Input, &kind)
		switch kind {
		case "big":
			return json.RawMessage(`"` + strings.Repeat("b", 2000) + `"`), nil
		case "deep":
			return nested(40), nil
		case "nul":
			return json.RawMessage(`"a\u0000b"`), nil
		}
		return json.RawMessage(`"fine"`), nil
	}}, &qflow.WorkerOptions{Limits: qflow.Limits{MaxOutputBytes: 1000, MaxJSONDepth: 32}, BatchSize: 8})
	ctx := ctxT(t, 60*time.Second)
	for _, bad := range []string{"big", "deep", "nul"} {
		calls.Store(0)
		in := []string{"ok", "ok", bad, "ok", "ok"}
		re, id := waitFailed(t, e, def, in, nil)
		if !strings.Contains(re.Message, map[string]string{"big": "the limit is 1000", "deep": "deeper than 32", "nul": `\u0000`}[bad]) {
			t.Errorf("%s: run error %q", bad, re.Message)
		}
		if n := calls.Load(); n != 5 {
			t.Errorf("%s: %d handler calls, want 5 (one per element, no retries)", bad, n)
		}
		run, err := e.client.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range run.Steps[0].Tasks {
			if task.Index == 2 && (task.Status != qflow.StatusFailed || task.Attempts != 1) {
				t.Errorf("%s: bad task %+v; want failed after 1 attempt", bad, task)
			}
		}
	}
}

// TestLargeMap runs a map step over 10,000 elements and its fan-in; with
// QFLOW_BIG=1 over 100,000 (about a minute on 2 cores: see
// docs/reliability.md).
func TestLargeMap(t *testing.T) {
	if testing.Short() {
		t.Skip("thousands of tasks")
	}
	e := newEnv(t)
	n := 10_000
	if os.Getenv("QFLOW_BIG") != "" {
		n = 100_000
	}
	def, err := qflow.NewFlow("bigmap").
		MapStep("each", "", qflow.StepOptions{}).
		Step("sum", qflow.StepDef{DependsOn: []string{"each"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]qflow.Handler{
		"each": func(_ context.Context, task *qflow.Task) (json.RawMessage, error) { return task.Input, nil },
		"sum": qflow.HandlerFunc(func(_ context.Context, in struct{ Each []int }) (int, error) {
			s := 0
			for _, v := range in.Each {
				s += v
			}
			return s, nil
		}),
	}
	for range 2 {
		e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 256, BatchSize: 256})
	}
	ctx := ctxT(t, 5*time.Minute)
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	began := time.Now()
	hd, err := e.client.StartFlow(ctx, def, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Since(began)
	out, err := hd.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := decode[struct{ Sum int }](t, out)
	if want := n * (n - 1) / 2; got.Sum != want {
		t.Fatalf("sum %d, want %d", got.Sum, want)
	}
	t.Logf("map over %d elements: started in %v, finished in %v", n, started.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// TestThousandsOfSteps defines and runs a dynamic flow of 2,001 steps (1,000
// roots, each followed by one step, all joined by one step),
// and refuses one over MaxFlowSteps up front.
func TestThousandsOfSteps(t *testing.T) {
	e := newEnv(t)
	b := qflow.NewFlow("wide")
	h := map[string]qflow.Handler{}
	one := func(context.Context, *qflow.Task) (json.RawMessage, error) { return json.RawMessage(`1`), nil }
	var leaves []string
	for i := range 1000 {
		a, c := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		b.Step(a, qflow.StepDef{TakesInput: true})
		b.Step(c, qflow.StepDef{DependsOn: []string{a}})
		h[a], h[c] = one, one
		leaves = append(leaves, c)
	}
	b.Step("join", qflow.StepDef{DependsOn: leaves[:999]})
	h["join"] = qflow.HandlerFunc(func(_ context.Context, in map[string]int) (int, error) { return len(in), nil })
	def, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 64, BatchSize: 64})
	ctx := ctxT(t, 2*time.Minute)
	began := time.Now()
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	defined := time.Since(began)
	hd, err := e.client.StartFlow(ctx, def, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := hd.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := decode[map[string]int](t, out)
	if got["join"] != 999 || got["b999"] != 1 {
		t.Fatalf("output %v", got)
	}
	t.Logf("%d steps: defined in %v, run in %v", len(def.Steps), defined.Round(time.Millisecond), (time.Since(began) - defined).Round(time.Millisecond))

	tooMany := qflow.NewFlow("toomany")
	for i := range qflow.MaxFlowSteps + 1 {
		tooMany.Step(fmt.Sprintf("s%d", i), qflow.StepDef{})
	}
	_, err = tooMany.Build()
	if !errors.Is(err, qflow.ErrInvalidFlow) || !strings.Contains(err.Error(), "10001 steps") {
		t.Fatalf("Build with %d steps: %.200v", qflow.MaxFlowSteps+1, err)
	}
}

// TestLongChain runs a dynamic flow whose 300 steps form one chain (each
// step waits for the previous one).
func TestLongChain(t *testing.T) {
	e := newEnv(t)
	b := qflow.NewFlow("longchain")
	h := map[string]qflow.Handler{}
	const n = 300
	for i := range n {
		s := qflow.StepDef{TakesInput: i == 0}
		if i > 0 {
			s.DependsOn = []string{fmt.Sprintf("s%d", i-1)}
		}
		b.Step(fmt.Sprintf("s%d", i), s)
		h[fmt.Sprintf("s%d", i)] = func(_ context.Context, task *qflow.Task) (json.RawMessage, error) {
			var in map[string]int
			_ = json.Unmarshal(task.Input, &in)
			return json.RawMessage(fmt.Sprint(in["run"] + in[fmt.Sprintf("s%d", task.Index+i-1)] + 1)), nil
		}
	}
	def, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	e.startWorker(def, h, nil)
	ctx := ctxT(t, 2*time.Minute)
	hd, err := e.client.StartFlow(ctx, def, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := hd.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := decode[map[string]int](t, out); got[fmt.Sprintf("s%d", n-1)] != n {
		t.Fatalf("output %v", got)
	}
}
