//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	qflow "github.com/quantumflow/qflow/runtime"
)

func (c *cluster) workers(n int, env ...string) []*proc {
	ps := make([]*proc, n)
	var wg sync.WaitGroup
	for i := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); ps[i] = c.spawn("worker", env...) }()
	}
	wg.Wait()
	return ps
}

func report(t *testing.T, scenario string, tl tally, extra string) {
	t.Logf("RESULT %s: %s %s", scenario, tl, extra)
}

// TestKillWorkers SIGKILLs one of three worker processes in the middle of
// its tasks, eight times, replacing it each time, while the other two keep
// going. Every run completes, nothing is completed twice, and every
// execution beyond one per task belongs to a killed worker.
func TestKillWorkers(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := []string{envLeaseMS + "=1500", envSleepMS + "=20,80"}
	ws := c.workers(3, env...)
	ids, in := c.startRuns(300)
	cl := qflow.NewClient(c.pool, &qflow.ClientOptions{Logger: quietLog()})
	defer cl.Close()
	var ok int
	done := make(chan struct{})
	go func() { ok = waitAll(ctx, t, cl, ids, in); close(done) }()

	killed := map[int]bool{}
	inflightAtKill := 0
	for k := 0; k < 8; k++ {
		time.Sleep(400 * time.Millisecond)
		victim := rand.IntN(len(ws))
		var held int
		_ = c.pool.QueryRow(ctx, `SELECT count(*) FROM qflow.step_tasks t JOIN qflow.workers w ON w.id = t.worker_id
			WHERE t.status = 'started' AND w.pid = $1`, ws[victim].pid).Scan(&held)
		inflightAtKill += held
		ws[victim].kill()
		killed[ws[victim].pid] = true
		ws[victim] = c.spawn("worker", env...)
	}
	<-done
	for _, w := range ws {
		if w.exitedByItself() {
			t.Errorf("worker %d exited: %s", w.pid, w.stderr)
		}
		w.stop(t)
	}
	tl := c.tally(ids, ok, killed)
	report(t, "kill-workers", tl, fmt.Sprintf("kills=%d tasks_held_at_kill=%d", len(killed), inflightAtKill))
	tl.check(t)
	if tl.ExtraOther != 0 {
		t.Errorf("%d extra executions by workers that were not killed", tl.ExtraOther)
	}
	if inflightAtKill == 0 {
		t.Errorf("no kill hit a worker holding tasks: the scenario did not test anything")
	}
}

// TestRestartPostgres crash-restarts PostgreSQL (immediate stop, crash
// recovery) under a steady load of 300 runs. Workers, their listeners and
// the client's waiters reconnect by themselves.
func TestRestartPostgres(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ws := c.workers(3, envLeaseMS+"=2000", envSleepMS+"=10,40")
	ids, in := c.startRuns(300)
	cl := qflow.NewClient(c.pool, &qflow.ClientOptions{Logger: quietLog()})
	defer cl.Close()
	var ok int
	done := make(chan struct{})
	go func() { ok = waitAll(ctx, t, cl, ids, in); close(done) }()

	// Let the load get going, then restart.
	for {
		n, err := c.completedTasks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n > 300 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	before, _ := c.completedTasks(ctx)
	down := c.crashRestart()
	up := time.Now()
	// Recovery: the first task completed after the server came back.
	var recovered time.Duration
	for recovered == 0 && ctx.Err() == nil {
		var n int
		err := c.pool.QueryRow(ctx, `SELECT count(*) FROM chaos_completions WHERE kind = 'task' AND at >= $1`, up).Scan(&n)
		if err == nil && n > 0 {
			recovered = time.Since(up)
		}
		time.Sleep(20 * time.Millisecond)
	}
	<-done
	total := time.Since(up)
	for _, w := range ws {
		if w.exitedByItself() {
			t.Errorf("worker %d exited: %s", w.pid, w.stderr)
		}
		w.stop(t)
	}
	tl := c.tally(ids, ok, nil)
	report(t, "restart-postgres", tl, fmt.Sprintf("tasks_done_before_restart=%d outage=%v first_completion_after_up=%v all_runs_done_after_up=%v",
		before, down.Round(time.Millisecond), recovered.Round(time.Millisecond), total.Round(time.Millisecond)))
	tl.check(t)
}

// TestTerminateBackends kills random worker, listener and waiter
// connections with pg_terminate_backend every 150ms during a load of 300
// runs.
func TestTerminateBackends(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ws := c.workers(3, envLeaseMS+"=1500", envSleepMS+"=10,40")
	ids, in := c.startRuns(300)
	// The waiting client gets its own pool, so its connections can be killed too.
	cpool, err := poolFor(ctx, c.url, "chaos_client", 8)
	if err != nil {
		t.Fatal(err)
	}
	defer cpool.Close()
	cl := qflow.NewClient(cpool, &qflow.ClientOptions{Logger: quietLog()})
	defer cl.Close()
	var ok int
	done := make(chan struct{})
	go func() { ok = waitAll(ctx, t, cl, ids, in); close(done) }()
	terminated, rounds := 0, 0
loop:
	for {
		select {
		case <-done:
			break loop
		case <-time.After(150 * time.Millisecond):
		}
		var n int
		err := c.pool.QueryRow(ctx, `SELECT count(*) FROM (
			SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name IN ('chaos_worker', 'chaos_client') AND random() < 0.3) x`).Scan(&n)
		if err == nil {
			terminated += n
			rounds++
		}
	}
	for _, w := range ws {
		if w.exitedByItself() {
			t.Errorf("worker %d exited: %s", w.pid, w.stderr)
		}
		w.stop(t)
	}
	tl := c.tally(ids, ok, nil)
	report(t, "terminate-backends", tl, fmt.Sprintf("rounds=%d connections_terminated=%d", rounds, terminated))
	tl.check(t)
	if terminated < 20 {
		t.Errorf("only %d connections terminated", terminated)
	}
}

// TestClientDiesBeforeCommit kills a client process that has started runs
// (and defined a flow) in its own transaction but not committed: nothing is
// left behind, and workers never see the runs.
func TestClientDiesBeforeCommit(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const clients = 5
	for range clients {
		p := c.spawn("client")
		p.kill()
	}
	// The server notices the closed socket at once; give it a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var open int
		if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'chaos_client_child'`).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends of killed clients still open", open)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var runs, steps, tasks, msgs, flows, queues int
	err := c.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM qflow.runs), (SELECT count(*) FROM qflow.step_states),
		(SELECT count(*) FROM qflow.step_tasks), (SELECT count(*) FROM qflow.step_tasks WHERE finished_at IS NULL),
		(SELECT count(*) FROM qflow.flows WHERE slug <> 'chaos'), (SELECT count(*) FROM pgmq.meta)`).
		Scan(&runs, &steps, &tasks, &msgs, &flows, &queues)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RESULT client-dies-before-commit: clients_killed=%d runs_started_in_their_tx=%d left_behind: runs=%d step_states=%d tasks=%d messages=%d flows=%d queues=%d",
		clients, 3*clients, runs, steps, tasks, msgs, flows, queues)
	if runs+steps+tasks+msgs+flows+queues != 0 {
		t.Errorf("left behind: runs=%d step_states=%d tasks=%d messages=%d flows=%d queues=%d", runs, steps, tasks, msgs, flows, queues)
	}
}

// TestSlowTaskNotRunTwice: a task that takes far longer than the lease
// (6s against 1s) while its worker is alive and heartbeating is never
// claimed by the two idle workers polling beside it (pgflow #110).
func TestSlowTaskNotRunTwice(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	slow := c.spawn("worker", envLeaseMS+"=1000", envSleepMS+"=6000,6000")
	ids, in := c.startRuns(1)
	// Wait until the slow worker holds the first task, then start two more.
	for {
		var n int
		_ = c.pool.QueryRow(ctx, `SELECT count(*) FROM chaos_exec`).Scan(&n)
		if n > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	others := c.workers(2, envLeaseMS+"=1000", envSleepMS+"=6000,6000")
	began := time.Now()
	// Watch the first task: it must stay with the slow worker.
	var attempts int
	for time.Since(began) < 5*time.Second {
		_ = c.pool.QueryRow(ctx, `SELECT attempts FROM qflow.step_tasks WHERE step_idx = 0`).Scan(&attempts)
		if attempts > 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cl := qflow.NewClient(c.pool, &qflow.ClientOptions{Logger: quietLog()})
	defer cl.Close()
	ok := waitAll(ctx, t, cl, ids, in)
	for _, w := range append(others, slow) {
		w.stop(t)
	}
	tl := c.tally(ids, ok, nil)
	report(t, "slow-task", tl, "lease=1s handler=6s workers=3")
	tl.check(t)
	if tl.Extra != 0 || attempts != 1 {
		t.Errorf("a slow task ran more than once: extra=%d attempts=%d", tl.Extra, attempts)
	}
}
