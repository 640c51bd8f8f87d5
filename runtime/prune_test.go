package runtime_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	qflow "github.com/quantumflow/qflow/runtime"
)

// TestPrune: finished runs older than the cut are deleted with their steps
// and tasks, in batches, by status; runs still going and recent ones stay.
func TestPrune(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, h := mapFlow(t)
	e.startWorker(def, h, nil)
	var done []*qflow.RunHandle
	for i := 0; i < 5; i++ {
		run, err := e.client.StartFlow(ctx, def, 3, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := run.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		done = append(done, run)
	}
	failed, err := e.client.StartFlow(ctx, def, "not an array", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := failed.Wait(ctx); err == nil {
		t.Fatal("a map over a string should fail its run")
	}
	// Four completed runs and the failed one finished long ago; the fifth
	// completed run just now. A run still going never qualifies.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.runs SET finished_at = now() - interval '2 days'
		WHERE id <> $1::uuid AND status <> 'started'`, done[4].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO qflow.runs (id, flow_id, flow_slug, input, remaining_steps, started_at)
		SELECT gen_random_uuid(), flow_id, flow_slug, '{}', 1, now() - interval '3 days' FROM qflow.runs LIMIT 1`); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []qflow.PruneOptions{{}, {OlderThan: -time.Hour}, {OlderThan: time.Hour, Statuses: []string{"started"}}, {OlderThan: time.Hour, BatchSize: 10001}} {
		if _, err := e.client.Prune(ctx, bad); !errors.Is(err, qflow.ErrBadPrune) {
			t.Errorf("Prune(%+v): %v; want ErrBadPrune", bad, err)
		}
	}
	res, err := e.client.Prune(ctx, qflow.PruneOptions{OlderThan: 24 * time.Hour, Statuses: []string{qflow.StatusFailed}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Runs != 1 {
		t.Fatalf("failed runs pruned: %+v; want 1", res)
	}
	res, err = e.client.Prune(ctx, qflow.PruneOptions{OlderThan: 24 * time.Hour, BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	// 4 runs of list → double (3 elements) → show (3), sum: 4 steps and 8 tasks a run.
	if diff := cmp.Diff(qflow.PruneResult{Runs: 4, Steps: 16, Tasks: 32}, res); diff != "" {
		t.Fatalf("prune (-want +got):\n%s", diff)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 2) // the recent one and the one still going
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks t WHERE NOT EXISTS (SELECT 1 FROM qflow.runs r WHERE r.id = t.run_id)`, 0)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_states s WHERE NOT EXISTS (SELECT 1 FROM qflow.runs r WHERE r.id = s.run_id)`, 0)
	if _, err := e.client.GetRun(ctx, done[4].ID); err != nil {
		t.Fatalf("the recent run: %v", err)
	}
	if _, err := e.client.GetRun(ctx, done[0].ID); !errors.Is(err, qflow.ErrRunNotFound) {
		t.Fatalf("a pruned run: %v; want ErrRunNotFound", err)
	}
}

// TestWorkerRetention: workers with Retention prune old finished runs on
// their own, one at a time: while another session holds the retention
// lock, nothing is pruned. Bad options stop Run before it starts.
func TestWorkerRetention(t *testing.T) {
	qflow.ShortenRetention(t, 50*time.Millisecond)
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, h := mapFlow(t)
	bad := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet(), Retention: &qflow.RetentionOptions{}})
	if err := bad.Register(def, h); err != nil {
		t.Fatal(err)
	}
	if err := bad.Run(ctx); !errors.Is(err, qflow.ErrBadPrune) {
		t.Fatalf("Run with Retention but no OlderThan: %v; want ErrBadPrune", err)
	}

	// Another session holds the lock the workers take to prune.
	conn, err := e.db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(4141047795805631332)`); err != nil {
		t.Fatal(err)
	}
	retain := &qflow.RetentionOptions{PruneOptions: qflow.PruneOptions{OlderThan: time.Hour}, Interval: 50 * time.Millisecond}
	for range 2 {
		e.startWorker(def, h, &qflow.WorkerOptions{Retention: retain})
	}
	for range 3 {
		run, err := e.client.StartFlow(ctx, def, 3, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := run.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.runs SET finished_at = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // six turns each
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 3)

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(4141047795805631332)`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		var n int
		_ = e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs`).Scan(&n)
		return n == 0
	})
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks`, 0)
}

// TestPruneKilledMidBatchLosesNothing: a prune whose connection dies in the
// middle of a batch leaves that batch whole (a run goes with all its steps
// and tasks, or not at all); the next prune finishes the job.
func TestPruneKilledMidBatchLosesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, h := mapFlow(t)
	e.startWorker(def, h, nil)
	for range 4 {
		run, err := e.client.StartFlow(ctx, def, 3, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := run.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.runs SET finished_at = now() - interval '2 days'`); err != nil {
		t.Fatal(err)
	}
	// Hold a task of the oldest runs: the prune's delete waits for it.
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM qflow.step_tasks FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.client.Prune(ctx, qflow.PruneOptions{OlderThan: time.Hour, BatchSize: 2})
		done <- err
	}()
	var pid int
	waitFor(t, func() bool {
		return e.db.Pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE query LIKE '%DELETE FROM qflow.step_tasks t USING old%' AND wait_event_type = 'Lock'`).Scan(&pid) == nil
	})
	if _, err := e.db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("Prune whose connection died returned no error")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 4)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks`, 4*8)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_states`, 4*4)
	res, err := e.client.Prune(ctx, qflow.PruneOptions{OlderThan: time.Hour, BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(qflow.PruneResult{Runs: 4, Steps: 16, Tasks: 32}, res); diff != "" {
		t.Fatalf("prune after the kill (-want +got):\n%s", diff)
	}
}
