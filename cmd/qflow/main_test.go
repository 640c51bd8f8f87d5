package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"qflow": func() { main() },
	})
}

// TestScripts runs testdata/scripts/*.txtar, each against its own fresh,
// migrated database on a real server (internal/pgtest) named by
// DATABASE_URL. The seed command fills it with flows and runs.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/scripts",
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("QFLOW_UPDATE_SCRIPTS") != "",
		Setup: func(e *testscript.Env) error {
			db := pgtest.New(scriptTB{TB: t, env: e})
			e.Setenv("DATABASE_URL", db.URL)
			e.Setenv("TZ", "UTC")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"seed":       seed,
			"seed-skips": seedSkips,
			"sql":        sqlCmd,
			"sleep":      sleepCmd,
		},
	})
}

// scriptTB lets pgtest, which wants a testing.TB, create a database for one
// script: cleanups run when the script ends and failures fail the script.
type scriptTB struct {
	testing.TB
	env *testscript.Env
}

func (s scriptTB) Helper()                   {}
func (s scriptTB) Cleanup(f func())          { s.env.Defer(f) }
func (s scriptTB) Fatal(args ...any)         { s.env.T().Fatal(args...) }
func (s scriptTB) Fatalf(f string, a ...any) { s.env.T().Fatal(fmt.Sprintf(f, a...)) }

// seed defines the "report" flow (fetch → score, a map → total) and runs
// it twice to completion, once succeeding (input [1,2]) and once failing
// (element 3 fails both its attempts), and starts a run of "slow", whose
// task stays queued as no worker serves it. It sets $DONE_RUN, $FAILED_RUN
// and $OPEN_RUN to their ids.
func seed(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) > 0 {
		ts.Fatalf("usage: seed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, ts.Getenv("DATABASE_URL"))
	ts.Check(err)
	defer pool.Close()
	quiet := slog.New(slog.DiscardHandler)
	client := runtime.NewClient(pool, &runtime.ClientOptions{Logger: quiet})
	defer client.Close()

	def, handlers := ReportFlow()
	opts := &runtime.WorkerOptions{Logger: quiet, PollInterval: 50 * time.Millisecond}
	for _, c := range []struct {
		env   string
		input []int
	}{{"DONE_RUN", []int{1, 2}}, {"FAILED_RUN", []int{1, 2, 3}}} {
		h, err := client.StartFlow(ctx, def, c.input, nil)
		ts.Check(err)
		w := runtime.NewWorker(pool, opts)
		ts.Check(w.Register(def, handlers))
		wctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		_, err = h.Wait(ctx)
		stop()
		ts.Check(<-done)
		if c.env == "FAILED_RUN" && !errors.Is(err, runtime.ErrRunFailed) {
			ts.Fatalf("failed run: %v", err)
		} else if c.env == "DONE_RUN" {
			ts.Check(err)
		}
		ts.Setenv(c.env, h.ID.String())
	}
	slow, err := runtime.NewFlow("slow").Step("wait", runtime.StepDef{TakesInput: true}).Build()
	ts.Check(err)
	h, err := client.StartFlow(ctx, slow, map[string]string{"note": "<b>not bold</b>"}, nil)
	ts.Check(err)
	ts.Setenv("OPEN_RUN", h.ID.String())
}

// seedSkips runs flow "triage" once to completion: classify, then
// quarantine (its condition is false: skipped), alert (skipped with
// quarantine), enrich (optional, fails: skipped with its error) and report
// (takes both skips: completed). It sets $SKIP_RUN to the run's id.
func seedSkips(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) > 0 {
		ts.Fatalf("usage: seed-skips")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, ts.Getenv("DATABASE_URL"))
	ts.Check(err)
	defer pool.Close()
	quiet := slog.New(slog.DiscardHandler)
	client := runtime.NewClient(pool, &runtime.ClientOptions{Logger: quiet})
	defer client.Close()
	def, err := runtime.NewFlow("triage").
		Step("classify", runtime.StepDef{TakesInput: true}).
		Step("quarantine", runtime.StepDef{DependsOn: []string{"classify"},
			When: func(context.Context, json.RawMessage) (bool, error) { return false, nil }}).
		Step("alert", runtime.StepDef{DependsOn: []string{"quarantine"}}).
		Step("enrich", runtime.StepDef{DependsOn: []string{"classify"}, Optional: true,
			Options: runtime.StepOptions{Retries: runtime.NoRetries}}).
		Step("report", runtime.StepDef{DependsOn: []string{"classify", "quarantine", "enrich"},
			AcceptsSkipped: []string{"quarantine", "enrich"}}).
		Build()
	ts.Check(err)
	ok := func(context.Context, *runtime.Task) (json.RawMessage, error) { return json.RawMessage(`"ok"`), nil }
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{Logger: quiet, PollInterval: 50 * time.Millisecond})
	ts.Check(w.Register(def, map[string]runtime.Handler{"classify": ok, "quarantine": ok, "alert": ok, "report": ok,
		"enrich": func(context.Context, *runtime.Task) (json.RawMessage, error) {
			return nil, errors.New("enrichment service down")
		}}))
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	h, err := client.StartFlow(ctx, def, "mail", nil)
	ts.Check(err)
	_, err = h.Wait(ctx)
	stop()
	ts.Check(<-done)
	ts.Check(err)
	ts.Setenv("SKIP_RUN", h.ID.String())
}

// ReportFlow is the dynamic flow the scripts use: fetch passes the flow
// input's numbers on, score checks each (3 is refused, a retryable error,
// so it is tried twice), total adds them up.
func ReportFlow() (runtime.FlowDef, map[string]runtime.Handler) {
	def, err := runtime.NewFlow("report").
		Options(runtime.StepOptions{Retries: 1, BaseDelay: 10 * time.Millisecond}).
		Step("fetch", runtime.StepDef{TakesInput: true}).
		MapStep("score", "fetch", runtime.StepOptions{}).
		Step("total", runtime.StepDef{DependsOn: []string{"score"}}).
		Build()
	if err != nil {
		panic(err)
	}
	return def, map[string]runtime.Handler{
		"fetch": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
			var in struct{ Run json.RawMessage }
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, runtime.Permanent(err)
			}
			return in.Run, nil
		},
		"score": runtime.HandlerFunc(func(ctx context.Context, n int) (int, error) {
			if n == 3 {
				return 0, fmt.Errorf("score %d: the scoring service refused the element", n)
			}
			return n * 10, nil
		}),
		"total": runtime.HandlerFunc(func(ctx context.Context, in struct{ Score []int }) (int, error) {
			sum := 0
			for _, s := range in.Score {
				sum += s
			}
			return sum, nil
		}),
	}
}

// sqlCmd runs one SQL statement on the script's database: sql 'STATEMENT'.
func sqlCmd(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: sql 'STATEMENT'")
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, ts.Getenv("DATABASE_URL"))
	ts.Check(err)
	defer pool.Close()
	_, err = pool.Exec(ctx, args[0])
	if neg && err == nil {
		ts.Fatalf("sql succeeded")
	} else if !neg {
		ts.Check(err)
	}
}

// sleepCmd waits: sleep DURATION.
func sleepCmd(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}
