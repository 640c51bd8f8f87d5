//go:build chaos

package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/localpg"
	"github.com/quantumflow/qflow/migrations"
	qflow "github.com/quantumflow/qflow/runtime"
)

// Environment of a child process.
const (
	envChild   = "CHAOS_CHILD" // "worker" or "client"
	envURL     = "CHAOS_URL"
	envLeaseMS = "CHAOS_LEASE_MS"
	envSleepMS = "CHAOS_SLEEP_MS" // "min,max" handler time
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "worker":
		os.Exit(childWorker())
	case "client":
		os.Exit(childClient())
	}
	os.Exit(m.Run())
}

// chaosFlow: a → b (a map over a's three elements) → c, five tasks a run.
// The output of c for input n is 6n+6.
var chaosFlow = qflow.FlowDef{
	Slug:    "chaos",
	Options: qflow.StepOptions{Retries: 19, BaseDelay: 100 * time.Millisecond, Timeout: time.Minute},
	Steps: []qflow.StepDef{
		{Slug: "a", TakesInput: true},
		{Slug: "b", Map: true, DependsOn: []string{"a"}},
		{Slug: "c", DependsOn: []string{"b"}},
	},
}

func poolFor(ctx context.Context, url, app string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// childWorker runs a worker until SIGTERM (graceful) or SIGKILL.
func childWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool, err := poolFor(ctx, os.Getenv(envURL), "chaos_worker", 16)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	counter, err := poolFor(ctx, os.Getenv(envURL), "chaos_counter", 16)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	lo, hi := 10, 40
	if parts := strings.Split(os.Getenv(envSleepMS), ","); len(parts) == 2 {
		lo, _ = strconv.Atoi(parts[0])
		hi, _ = strconv.Atoi(parts[1])
	}
	pid := os.Getpid()
	// record notes the execution, then spends the handler's time.
	record := func(ctx context.Context, t *qflow.Task) error {
		if _, err := counter.Exec(ctx, `INSERT INTO chaos_exec (run_id, step, idx, attempt, pid) VALUES ($1, $2, $3, $4, $5)`,
			t.RunID, t.Step, t.Index, t.Attempt, pid); err != nil {
			return err
		}
		d := time.Duration(lo+rand.IntN(hi-lo+1)) * time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		return nil
	}
	w := qflow.NewWorker(pool, &qflow.WorkerOptions{
		Concurrency: 8, Lease: time.Duration(envInt(envLeaseMS, 1500)) * time.Millisecond,
		PollInterval: 200 * time.Millisecond, ShutdownTimeout: 5 * time.Second, Logger: log,
	})
	err = w.Register(chaosFlow, map[string]qflow.Handler{
		"a": func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			if err := record(ctx, t); err != nil {
				return nil, err
			}
			var in struct{ Run int }
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, qflow.Permanent(err)
			}
			return json.Marshal([]int{in.Run, in.Run + 1, in.Run + 2})
		},
		"b": func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			if err := record(ctx, t); err != nil {
				return nil, err
			}
			var v int
			if err := json.Unmarshal(t.Input, &v); err != nil {
				return nil, qflow.Permanent(err)
			}
			return json.Marshal(v * 2)
		},
		"c": func(ctx context.Context, t *qflow.Task) (json.RawMessage, error) {
			if err := record(ctx, t); err != nil {
				return nil, err
			}
			var in struct{ B []int }
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, qflow.Permanent(err)
			}
			s := 0
			for _, v := range in.B {
				s += v
			}
			return json.Marshal(s)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("ready %d %s\n", pid, w.ID())
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "worker.Run:", err)
		return 1
	}
	return 0
}

// childClient starts runs in its own transaction, says so, and waits to be
// killed before committing.
func childClient() int {
	ctx := context.Background()
	pool, err := poolFor(ctx, os.Getenv(envURL), "chaos_client_child", 2)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c := qflow.NewClient(pool, &qflow.ClientOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tx, err := pool.Begin(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for i := range 3 {
		if _, err := c.StartRunTx(ctx, tx, "chaos", i, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	if _, err := c.StartFlowTx(ctx, tx, qflow.FlowDef{Slug: "chaos_uncommitted", Steps: []qflow.StepDef{{Slug: "x", TakesInput: true}}}, 1, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("ready")
	select {}
}

// cluster is one scenario's throwaway PostgreSQL with the schema, the
// flow and the bookkeeping tables.
type cluster struct {
	t    testing.TB
	pg   *localpg.Cluster
	url  string
	pool *pgxpool.Pool // the test's own, application_name chaos_test
}

const bookkeeping = `
CREATE TABLE chaos_exec (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id  uuid NOT NULL, step text NOT NULL, idx integer NOT NULL,
    attempt integer NOT NULL, pid integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE chaos_completions (kind text NOT NULL, run_id uuid NOT NULL, step_idx smallint, idx integer,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION chaos_task_completed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_completions (kind, run_id, step_idx, idx) VALUES ('task', NEW.run_id, NEW.step_idx, NEW.task_index);
    RETURN NEW;
END $$;
CREATE TRIGGER chaos_task_completed AFTER UPDATE ON qflow.step_tasks
    FOR EACH ROW WHEN (NEW.status = 'completed' AND (OLD.status IS DISTINCT FROM 'completed' OR OLD.output IS DISTINCT FROM NEW.output))
    EXECUTE FUNCTION chaos_task_completed();
CREATE FUNCTION chaos_run_completed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_completions (kind, run_id) VALUES ('run', NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER chaos_run_completed AFTER UPDATE ON qflow.runs
    FOR EACH ROW WHEN (NEW.status = 'completed' AND (OLD.status IS DISTINCT FROM 'completed' OR OLD.output IS DISTINCT FROM NEW.output))
    EXECUTE FUNCTION chaos_run_completed();
`

func newCluster(t testing.TB) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := localpg.Start(ctx)
	if err != nil {
		t.Fatalf("throwaway cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Log(err)
		}
	})
	c := &cluster{t: t, pg: pg, url: pg.URL()}
	c.pool, err = poolFor(ctx, c.url, "chaos_test", 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.pool.Close)
	if err := migrations.Migrate(ctx, c.pool); err != nil {
		t.Fatal(err)
	}
	// localpg turns durability off; a crash restart must not lose commits.
	if _, err := c.pool.Exec(ctx, `ALTER SYSTEM SET synchronous_commit = on`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.pool.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.pool.Exec(ctx, bookkeeping); err != nil {
		t.Fatal(err)
	}
	if _, err := qflow.NewClient(c.pool, nil).DefineFlow(ctx, chaosFlow); err != nil {
		t.Fatal(err)
	}
	return c
}

// pgCtl runs pg_ctl on the cluster as the OS user that owns it.
func (c *cluster) pgCtl(args ...string) error {
	data := filepath.Join(c.pg.Dir(), "data")
	cmd := exec.Command(filepath.Join(c.pg.BinDir(), "pg_ctl"), append(args, "-D", data, "-w", "-t", "60")...)
	cmd.Dir = c.pg.Dir()
	if fi, err := os.Stat(data); err == nil && os.Geteuid() == 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: st.Uid, Gid: st.Gid, Groups: []uint32{}}}
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %v\n%s", args, err, out)
	}
	return nil
}

// crashRestart stops PostgreSQL the hard way (immediate: no checkpoint,
// crash recovery at start), starts it again and returns how long it was
// unavailable.
func (c *cluster) crashRestart() time.Duration {
	c.t.Helper()
	began := time.Now()
	if err := c.pgCtl("stop", "-m", "immediate"); err != nil {
		c.t.Fatal(err)
	}
	if err := c.pgCtl("start", "-l", filepath.Join(c.pg.Dir(), "postgres.log")); err != nil {
		c.t.Fatal(err)
	}
	return time.Since(began)
}

// proc is a child process.
type proc struct {
	cmd    *exec.Cmd
	pid    int
	done   chan struct{}
	killed bool
	stderr *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 64<<10 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// spawn starts this test binary as a child of the given kind and waits for
// its "ready" line.
func (c *cluster) spawn(kind string, env ...string) *proc {
	c.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+kind, envURL+"="+c.url)
	cmd.Env = append(cmd.Env, env...)
	p := &proc{cmd: cmd, done: make(chan struct{}), stderr: &lockedBuf{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.pid = cmd.Process.Pid
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if !ok && strings.HasPrefix(sc.Text(), "ready") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	})
	select {
	case ok := <-ready:
		if !ok {
			<-p.done
			c.t.Fatalf("%s child exited: %v\n%s", kind, cmd.ProcessState, p.stderr)
		}
	case <-time.After(60 * time.Second):
		c.t.Fatalf("%s child not ready\n%s", kind, p.stderr)
	}
	return p
}

func (p *proc) kill() {
	p.killed = true
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the child to shut down gracefully.
func (p *proc) stop(t testing.TB) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("worker %d did not stop", p.pid)
		p.kill()
	}
}

func (p *proc) exitedByItself() bool {
	select {
	case <-p.done:
		return !p.killed
	default:
		return false
	}
}

// startRuns starts n runs of the chaos flow and returns their ids and inputs.
func (c *cluster) startRuns(n int) ([]uuid.UUID, map[uuid.UUID]int) {
	c.t.Helper()
	inputs := make([]any, n)
	for i := range inputs {
		inputs[i] = i
	}
	cl := qflow.NewClient(c.pool, &qflow.ClientOptions{Logger: quietLog()})
	ids, err := cl.StartRuns(context.Background(), "chaos", inputs, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	in := map[uuid.UUID]int{}
	for i, id := range ids {
		in[id] = i
	}
	return ids, in
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitAll waits for every run through a Client (so the client's event
// listener has to survive whatever the scenario does) and returns how many
// completed with the right output.
func waitAll(ctx context.Context, t *testing.T, cl *qflow.Client, ids []uuid.UUID, in map[uuid.UUID]int) (ok int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out, err := cl.WaitRun(ctx, id)
			if err != nil {
				t.Errorf("run %s: %v", id, err)
				return
			}
			var o struct{ C int }
			if err := json.Unmarshal(out, &o); err != nil || o.C != 6*in[id]+6 {
				t.Errorf("run %s (input %d): output %s", id, in[id], out)
				return
			}
			mu.Lock()
			ok++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return ok
}

// tally is what a scenario reports.
type tally struct {
	Runs, Completed, Lost int
	TasksCompletedTwice   int
	RunsCompletedTwice    int
	Executions, Tasks     int
	Extra                 int // executions beyond one per task
	ExtraKilled           int // ... by a worker that was SIGKILLed
	ExtraOther            int // ... anything else (lost completions)
	Broken                int // rows that break the engine's rules (qflow.invariant_violations)
}

func (c *cluster) tally(ids []uuid.UUID, ok int, killed map[int]bool) tally {
	c.t.Helper()
	ctx := context.Background()
	tl := tally{Runs: len(ids), Completed: ok, Lost: len(ids) - ok}
	q := func(sql string, dst *int, args ...any) {
		if err := c.pool.QueryRow(ctx, sql, args...).Scan(dst); err != nil {
			c.t.Fatalf("%s: %v", sql, err)
		}
	}
	q(`SELECT count(*) FROM (SELECT 1 FROM chaos_completions WHERE kind = 'task' GROUP BY run_id, step_idx, idx HAVING count(*) > 1) x`, &tl.TasksCompletedTwice)
	q(`SELECT count(*) FROM (SELECT 1 FROM chaos_completions WHERE kind = 'run' GROUP BY run_id HAVING count(*) > 1) x`, &tl.RunsCompletedTwice)
	q(`SELECT count(*) FROM chaos_exec`, &tl.Executions)
	q(`SELECT count(*) FROM qflow.step_tasks`, &tl.Tasks)
	q(`SELECT count(*) FROM qflow.invariant_violations()`, &tl.Broken)
	tl.Extra = tl.Executions - tl.Tasks
	// An extra execution is any but the one whose attempt completed the task.
	rows, err := c.pool.Query(ctx, `
		SELECT e.pid FROM chaos_exec e
		JOIN qflow.steps s ON s.slug = e.step AND s.flow_id = (SELECT id FROM qflow.flows WHERE slug = 'chaos')
		JOIN qflow.step_tasks t ON t.run_id = e.run_id AND t.step_idx = s.idx AND t.task_index = e.idx
		LEFT JOIN qflow.workers w ON w.id = t.worker_id
		WHERE NOT (e.attempt = t.attempts AND e.pid = w.pid AND t.status = 'completed')`)
	if err != nil {
		c.t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		c.t.Fatal(err)
	}
	for _, p := range pids {
		if killed[int(p)] {
			tl.ExtraKilled++
		} else {
			tl.ExtraOther++
		}
	}
	return tl
}

func (tl tally) String() string {
	return fmt.Sprintf("runs=%d completed=%d lost=%d tasks=%d tasks_completed_twice=%d runs_completed_twice=%d executions=%d extra=%d (killed_worker=%d other=%d) broken_rows=%d",
		tl.Runs, tl.Completed, tl.Lost, tl.Tasks, tl.TasksCompletedTwice, tl.RunsCompletedTwice, tl.Executions, tl.Extra, tl.ExtraKilled, tl.ExtraOther, tl.Broken)
}

// check fails the test on a broken guarantee.
func (tl tally) check(t *testing.T) {
	t.Helper()
	if tl.Lost != 0 || tl.TasksCompletedTwice != 0 || tl.RunsCompletedTwice != 0 || tl.Tasks != 5*tl.Runs || tl.Broken != 0 {
		t.Errorf("guarantee broken: %s", tl)
	}
}

// completedTasks counts tasks completed so far.
func (c *cluster) completedTasks(ctx context.Context) (int, error) {
	var n int
	err := c.pool.QueryRow(ctx, `SELECT count(*) FROM chaos_completions WHERE kind = 'task'`).Scan(&n)
	return n, err
}
