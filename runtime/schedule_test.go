package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

func tickFlow(slug string) (qflow.FlowDef, map[string]qflow.Handler) {
	def := qflow.FlowDef{Slug: slug, Steps: []qflow.StepDef{{Slug: "work", TakesInput: true}}}
	h := map[string]qflow.Handler{"work": func(_ context.Context, t *qflow.Task) (json.RawMessage, error) { return t.Input, nil }}
	return def, h
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// pauseAt pauses the schedule in the transaction that fires its n-th
// tick, so exactly n ticks fire however the workers race.
func pauseAt(n int, fired *atomic.Int64) func(context.Context, pgx.Tx, string, time.Time) error {
	return func(ctx context.Context, tx pgx.Tx, name string, _ time.Time) error {
		_, err := tx.Exec(ctx, `UPDATE qflow.schedules SET paused = true
			WHERE name = $1 AND (SELECT count(*) FROM qflow.schedule_ticks WHERE schedule = $1) >= $2`, name, n)
		if err == nil {
			fired.Add(1)
		}
		return err
	}
}

// Three workers on three pools race on a per-second schedule for 20 ticks:
// exactly 20 runs, one per tick, each tick fired once.
func TestScheduleThreeWorkersTwentyTicks(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 90*time.Second)
	def, h := tickFlow("ticker")
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Schedule(ctx, "every_second", qflow.ScheduleParams{Flow: "ticker", Cron: "* * * * * *", Input: map[string]int{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	const ticks = 20
	var fired [3]atomic.Int64
	for i := range 3 {
		pool, err := pgxpool.New(ctx, e.db.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		w := qflow.NewWorker(pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 200 * time.Millisecond})
		if err := w.Register(def, h); err != nil {
			t.Fatal(err)
		}
		w.OnFire(pauseAt(ticks, &fired[i]))
		wctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker %d: %v", i, err)
			}
		})
	}
	waitUntil(t, ctx, "the schedule to pause itself", func() bool {
		s, err := e.client.GetSchedule(ctx, "every_second")
		return err == nil && s.Paused
	})
	waitUntil(t, ctx, "the runs to complete", func() bool {
		return count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs WHERE status = 'started'`) == 0
	})
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs WHERE flow_slug = 'ticker' AND status = 'completed'`); n != ticks {
		t.Errorf("%d completed runs, want %d", n, ticks)
	}
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs`); n != ticks {
		t.Errorf("%d runs in all, want %d", n, ticks)
	}
	if n := count(t, e.db.Pool, `SELECT count(DISTINCT run_id) FROM qflow.schedule_ticks t JOIN qflow.runs r ON r.id = t.run_id WHERE t.schedule = 'every_second'`); n != ticks {
		t.Errorf("%d ticks with a distinct run, want %d", n, ticks)
	}
	list, err := e.client.ScheduleTicks(ctx, "every_second")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != ticks {
		t.Fatalf("%d ticks recorded, want %d", len(list), ticks)
	}
	for i, tk := range list {
		if tk.Tick.Nanosecond() != 0 {
			t.Errorf("tick %s is not on a second", tk.Tick)
		}
		if i > 0 && !tk.Tick.Before(list[i-1].Tick) {
			t.Errorf("ticks not strictly decreasing: %s then %s", list[i-1].Tick, tk.Tick)
		}
	}
	var total int64
	for i := range fired {
		t.Logf("worker %d fired %d ticks", i, fired[i].Load())
		total += fired[i].Load()
	}
	if total != ticks {
		t.Errorf("workers fired %d ticks, want %d", total, ticks)
	}
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs WHERE input <> '{"n": 1}'::jsonb`); n != 0 {
		t.Errorf("%d runs without the schedule's input", n)
	}
}

const (
	cronProcSchedule = "proc_every_second"
	cronProcTicks    = 20
)

// declareCronChild makes a worker process of
// TestScheduleThreeProcessesTwentyTicks declare the per-second schedule
// (Worker.Schedule, created or updated when Run starts), pause it in the
// transaction that fires its cronProcTicks-th tick (pauseAt: a condition
// in SQL, so it holds across processes), and record each tick it fires,
// with its pid, in limits_log in that same transaction.
func declareCronChild(t *testing.T, w *qflow.Worker) {
	t.Helper()
	if err := w.Schedule(cronProcSchedule, qflow.ScheduleParams{Flow: "lim_cron", Cron: "* * * * * *", Input: map[string]int{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	pause := pauseAt(cronProcTicks, new(atomic.Int64))
	pid := os.Getpid()
	w.OnFire(func(ctx context.Context, tx pgx.Tx, name string, tick time.Time) error {
		if _, err := tx.Exec(ctx, `INSERT INTO limits_log (step, key, run_id, pid, began)
			SELECT 'fired', $2::text, run_id, $3::integer, $1::timestamptz FROM qflow.schedule_ticks WHERE schedule = $2::text AND tick = $1::timestamptz`,
			tick, name, pid); err != nil {
			return err
		}
		return pause(ctx, tx, name, tick)
	})
}

// TestScheduleThreeProcessesTwentyTicks is issue #16's "3 worker processes
// racing on the same cron tick for 20 ticks: exactly 20 runs", with real
// processes: the test binary runs itself three times as
// TestLimitsWorkerChild (scenario "cron"); each child registers flow
// lim_cron, declares the per-second schedule with Worker.Schedule and
// runs until SIGTERM. The transaction that fires the 20th tick pauses the
// schedule (a SQL condition on the count of tick rows, so it holds whichever
// process fires it). The test waits (no deadline but the test's) until the
// schedule is paused and the runs finished, then asserts: exactly 20 tick
// rows, 20 committed firings, one per tick (no tick fired twice), every
// tick has a run and no run belongs to two ticks, the flow has exactly 20
// runs, all completed with the schedule's input, each run's task ran once.
// Nothing is timed: which process fires which tick is only logged.
// About 20 s.
func TestScheduleThreeProcessesTwentyTicks(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 90*time.Second)
	began := time.Now()
	startLimitWorkers(t, e, "cron", 3, 4)
	waitUntil(t, ctx, "the schedule to pause itself", func() bool {
		s, err := e.client.GetSchedule(ctx, cronProcSchedule)
		return err == nil && s.Paused
	})
	waitUntil(t, ctx, "the runs to complete", func() bool {
		return count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs WHERE status = 'started'`) == 0
	})
	took := time.Since(began)
	const n = cronProcTicks
	if c := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks WHERE schedule = $1`, cronProcSchedule); c != n {
		t.Errorf("%d ticks recorded, want %d", c, n)
	}
	if c := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks WHERE schedule = $1 AND run_id IS NULL`, cronProcSchedule); c != 0 {
		t.Errorf("%d ticks without a run", c)
	}
	// Each committed firing recorded itself: one per tick, none twice.
	if c := count(t, e.db.Pool, `SELECT count(*) FROM limits_log WHERE step = 'fired'`); c != n {
		t.Errorf("%d firings committed, want %d", c, n)
	}
	if c := count(t, e.db.Pool, `SELECT count(*) FROM (SELECT began FROM limits_log WHERE step = 'fired' GROUP BY began HAVING count(*) > 1) d`); c != 0 {
		t.Errorf("%d ticks fired more than once", c)
	}
	if c := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks k JOIN limits_log f ON f.step = 'fired' AND f.began = k.tick AND f.run_id = k.run_id
		WHERE k.schedule = $1`, cronProcSchedule); c != n {
		t.Errorf("%d ticks match the firing that recorded them, want %d", c, n)
	}
	// Exactly one run per tick, and every run of the flow came from a tick.
	if c := count(t, e.db.Pool, `SELECT count(DISTINCT k.run_id) FROM qflow.schedule_ticks k JOIN qflow.runs r ON r.id = k.run_id WHERE k.schedule = $1`, cronProcSchedule); c != n {
		t.Errorf("%d distinct runs of ticks, want %d", c, n)
	}
	if c := count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs`); c != n {
		t.Errorf("%d runs in all, want %d (one per tick)", c, n)
	}
	if c := count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs WHERE flow_slug = 'lim_cron' AND status = 'completed' AND input = '{"n": 1}'::jsonb`); c != n {
		t.Errorf("%d completed runs with the schedule's input, want %d", c, n)
	}
	checkOneAttempt(t, e, "lim_cron")
	if c := count(t, e.db.Pool, `SELECT count(DISTINCT run_id) FROM limits_log WHERE step = 'tick'`); c != n {
		t.Errorf("the handler ran for %d runs, want %d", c, n)
	}
	list, err := e.client.ScheduleTicks(ctx, cronProcSchedule)
	if err != nil {
		t.Fatal(err)
	}
	for i, tk := range list {
		if tk.Tick.Nanosecond() != 0 {
			t.Errorf("tick %s is not on a second", tk.Tick)
		}
		if i > 0 && !tk.Tick.Before(list[i-1].Tick) {
			t.Errorf("ticks not strictly decreasing: %s then %s", list[i-1].Tick, tk.Tick)
		}
	}
	rows, err := e.db.Pool.Query(ctx, `SELECT pid, count(*) FROM limits_log WHERE step = 'fired' GROUP BY pid ORDER BY pid`)
	if err != nil {
		t.Fatal(err)
	}
	byPid, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var pid, c int
		err := r.Scan(&pid, &c)
		return fmt.Sprintf("pid %d: %d", pid, c), err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d ticks, %d runs in %s; firings by process: %v", len(list), n, took, byPid)
}

// Ticks missed while no worker ran: by default the latest one runs once;
// with MissedAll every one runs, oldest first.
func TestScheduleMissedTicks(t *testing.T) {
	for _, c := range []struct {
		policy qflow.MissedPolicy
		runs   int
	}{{"", 1}, {qflow.MissedLatest, 1}, {qflow.MissedAll, 6}} {
		t.Run(fmt.Sprintf("policy=%q", c.policy), func(t *testing.T) {
			e := newEnv(t)
			ctx := ctxT(t, 60*time.Second)
			def, h := tickFlow("hourly")
			if _, err := e.client.DefineFlow(ctx, def); err != nil {
				t.Fatal(err)
			}
			if _, err := e.client.Schedule(ctx, "hourly", qflow.ScheduleParams{Flow: "hourly", Cron: "0 * * * *", Missed: c.policy}); err != nil {
				t.Fatal(err)
			}
			// Five hours with no worker: six ticks are due.
			if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.schedules SET next_tick = date_trunc('hour', now()) - interval '5 hours'`); err != nil {
				t.Fatal(err)
			}
			e.startWorker(def, h, nil)
			waitUntil(t, ctx, "the missed ticks to fire", func() bool {
				s, err := e.client.GetSchedule(ctx, "hourly")
				return err == nil && s.NextTick.After(time.Now())
			})
			if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs`); n != c.runs {
				t.Errorf("%d runs, want %d", n, c.runs)
			}
			if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks`); n != c.runs {
				t.Errorf("%d ticks, want %d", n, c.runs)
			}
			// The latest tick fired in both cases, and the next is an hour on.
			if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedules
				WHERE last_tick = date_trunc('hour', now()) AND next_tick = date_trunc('hour', now()) + interval '1 hour'
				  AND last_run_id = (SELECT run_id FROM qflow.schedule_ticks WHERE tick = date_trunc('hour', now()))`); n != 1 {
				t.Error("the latest tick did not fire last, or next_tick is not the next hour")
			}
			// Prune deletes the runs a schedule started; their ticks stay.
			waitUntil(t, ctx, "the runs to complete", func() bool {
				return count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs WHERE status = 'started'`) == 0
			})
			if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.runs SET finished_at = now() - interval '1 day'`); err != nil {
				t.Fatal(err)
			}
			res, err := e.client.Prune(ctx, qflow.PruneOptions{OlderThan: time.Hour})
			if err != nil || res.Runs != int64(c.runs) {
				t.Errorf("Prune = %+v, %v; want %d runs pruned", res, err, c.runs)
			}
			if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks`); n != c.runs {
				t.Errorf("%d ticks after Prune, want %d", n, c.runs)
			}
		})
	}
}

// A tick whose transaction dies with its connection (as when PostgreSQL
// restarts mid-tick) leaves nothing behind and fires once on the next try.
func TestScheduleTickSurvivesLostConnection(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, h := tickFlow("fragile")
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Schedule(ctx, "fragile", qflow.ScheduleParams{Flow: "fragile", Cron: "@hourly"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.schedules SET next_tick = date_trunc('hour', now())`); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var calls atomic.Int64
	w := qflow.NewWorker(pool, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 100 * time.Millisecond})
	if err := w.Register(def, h); err != nil {
		t.Fatal(err)
	}
	w.OnFire(func(ctx context.Context, tx pgx.Tx, _ string, _ time.Time) error {
		if calls.Add(1) > 1 {
			return nil
		}
		// The server ends this backend: the transaction, with the run it
		// started, is gone.
		_, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
		if err == nil {
			return errors.New("backend not terminated")
		}
		return err
	})
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	waitUntil(t, ctx, "the tick to fire", func() bool {
		return count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks`) > 0
	})
	if calls.Load() != 2 {
		t.Errorf("the tick was tried %d times, want 2 (one lost, one committed)", calls.Load())
	}
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs`); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks WHERE tick = date_trunc('hour', now()) AND run_id IS NOT NULL`); n != 1 {
		t.Errorf("%d ticks of this hour with a run, want 1", n)
	}
}

// Create, list, update, pause, resume, delete, and the errors of each.
func TestScheduleLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	c := e.client
	def, h := tickFlow("report")
	if _, err := c.Schedule(ctx, "report", qflow.ScheduleParams{Flow: "report", Cron: "0 * * * *"}); !errors.Is(err, qflow.ErrUnknownFlow) {
		t.Fatalf("Schedule of an undefined flow: %v; want ErrUnknownFlow", err)
	}
	if _, err := c.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	for _, p := range []qflow.ScheduleParams{
		{Flow: "report", Cron: "0 * * *"},
		{Flow: "report", Cron: "0 * * * *", TZ: "Mars/Olympus"},
		{Flow: "report", Cron: "0 * * * *", Missed: "some"},
	} {
		if _, err := c.Schedule(ctx, "report", p); !errors.Is(err, qflow.ErrBadSchedule) {
			t.Errorf("Schedule(%+v): %v; want ErrBadSchedule", p, err)
		}
	}
	if _, err := c.Schedule(ctx, "Bad Name", qflow.ScheduleParams{Flow: "report", Cron: "@daily"}); !errors.Is(err, qflow.ErrBadSchedule) {
		t.Errorf("Schedule with a bad name: %v; want ErrBadSchedule", err)
	}
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedules`); n != 0 {
		t.Fatalf("%d schedules stored after errors, want 0", n)
	}

	s, err := c.Schedule(ctx, "report", qflow.ScheduleParams{Flow: "report", Cron: "0 9 * * *", TZ: "Europe/Berlin", Input: map[string]string{"to": "ops"}})
	if err != nil {
		t.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	if nt := s.NextTick.In(berlin); nt.Hour() != 9 || nt.Minute() != 0 || !nt.After(time.Now()) || nt.After(time.Now().Add(25*time.Hour)) {
		t.Errorf("next tick %s, want the next 9:00 in Berlin", nt)
	}
	if s.TZ != "Europe/Berlin" || s.Missed != qflow.MissedLatest || s.Paused || string(s.Input) != `{"to": "ops"}` {
		t.Errorf("stored %+v", s)
	}
	// An update with the same spec keeps the next tick.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.schedules SET next_tick = next_tick + interval '1 day'`); err != nil {
		t.Fatal(err)
	}
	s2, err := c.Schedule(ctx, "report", qflow.ScheduleParams{Flow: "report", Cron: "0 9 * * *", TZ: "Europe/Berlin", Input: map[string]string{"to": "all"}})
	if err != nil {
		t.Fatal(err)
	}
	if !s2.NextTick.Equal(s.NextTick.Add(24*time.Hour)) || string(s2.Input) != `{"to": "all"}` {
		t.Errorf("same spec: next tick %s (want %s kept), input %s", s2.NextTick, s.NextTick.Add(24*time.Hour), s2.Input)
	}
	// A new spec starts from its first tick after now.
	s3, err := c.Schedule(ctx, "report", qflow.ScheduleParams{Flow: "report", Cron: "@hourly", Input: map[string]string{"to": "all"}})
	if err != nil {
		t.Fatal(err)
	}
	if s3.NextTick.Minute() != 0 || s3.NextTick.After(time.Now().Add(time.Hour)) || s3.TZ != "UTC" {
		t.Errorf("new spec: next tick %s, tz %q; want the next full hour in UTC", s3.NextTick, s3.TZ)
	}
	if _, err := c.Schedule(ctx, "nightly", qflow.ScheduleParams{Flow: "report", Cron: "@daily", Paused: true}); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListSchedules(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "nightly" || !list[0].Paused || list[1].Name != "report" || list[1].Paused {
		t.Fatalf("ListSchedules = %+v; want nightly (paused) and report", list)
	}
	if l, _ := c.ListSchedules(ctx, "other"); len(l) != 0 {
		t.Errorf("ListSchedules(other) = %+v; want none", l)
	}

	// A paused schedule whose tick is due does not fire; resuming skips
	// the ticks that came while it was paused.
	if err := c.PauseSchedule(ctx, "report"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Schedule(ctx, "due", qflow.ScheduleParams{Flow: "report", Cron: "@hourly"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE qflow.schedules SET next_tick = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	e.startWorker(def, h, nil)
	waitUntil(t, ctx, "the unpaused schedule to fire", func() bool {
		return count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks WHERE schedule = 'due'`) == 1
	})
	// The worker reads every schedule of its flows in one query: had the
	// paused ones been fired, they would have been in the same round.
	time.Sleep(300 * time.Millisecond)
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks WHERE schedule <> 'due'`); n != 0 {
		t.Errorf("paused schedules fired %d ticks", n)
	}
	if err := c.ResumeSchedule(ctx, "report"); err != nil {
		t.Fatal(err)
	}
	r, err := c.GetSchedule(ctx, "report")
	if err != nil {
		t.Fatal(err)
	}
	if r.Paused || !r.NextTick.After(time.Now()) {
		t.Errorf("resumed: paused %v, next tick %s; want not paused, next tick after now", r.Paused, r.NextTick)
	}
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks WHERE schedule = 'report'`); n != 0 {
		t.Errorf("resume fired %d missed ticks, want 0", n)
	}

	if err := c.DeleteSchedule(ctx, "due"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.schedule_ticks`); n != 0 {
		t.Errorf("%d ticks left after delete", n)
	}
	if n := count(t, e.db.Pool, `SELECT count(*) FROM qflow.runs`); n != 1 {
		t.Errorf("%d runs, want the deleted schedule's 1 kept", n)
	}
	for name, err := range map[string]error{
		"delete": c.DeleteSchedule(ctx, "due"),
		"pause":  c.PauseSchedule(ctx, "nope"),
		"resume": c.ResumeSchedule(ctx, "nope"),
	} {
		if !errors.Is(err, qflow.ErrUnknownSchedule) {
			t.Errorf("%s of an unknown schedule: %v; want ErrUnknownSchedule", name, err)
		}
	}
	if _, err := c.GetSchedule(ctx, "due"); !errors.Is(err, qflow.ErrUnknownSchedule) {
		t.Errorf("GetSchedule after delete: %v; want ErrUnknownSchedule", err)
	}
}

// A worker creates the schedules declared with Worker.Schedule when it
// starts, and refuses bad ones before.
func TestWorkerDeclaresSchedule(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, h := tickFlow("declared")
	w := qflow.NewWorker(e.db.Pool, &qflow.WorkerOptions{Logger: quiet()})
	if err := w.Schedule("declared", qflow.ScheduleParams{Flow: "declared", Cron: "@daily"}); !errors.Is(err, qflow.ErrBadSchedule) {
		t.Errorf("Schedule before Register: %v; want ErrBadSchedule", err)
	}
	if err := w.Register(def, h); err != nil {
		t.Fatal(err)
	}
	if err := w.Schedule("declared", qflow.ScheduleParams{Flow: "declared", Cron: "0 25 * * *"}); !errors.Is(err, qflow.ErrBadSchedule) {
		t.Errorf("Schedule with a bad spec: %v; want ErrBadSchedule", err)
	}
	if err := w.Schedule("declared", qflow.ScheduleParams{Flow: "declared", Cron: "30 6 * * 1-5", TZ: "America/New_York"}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	waitUntil(t, ctx, "the worker to start", w.Local)
	if _, err := e.client.GetSchedule(ctx, "declared"); err != nil {
		t.Fatalf("the worker started without creating its schedule: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s, _ := e.client.GetSchedule(ctx, "declared")
	if s.Cron != "30 6 * * 1-5" || s.TZ != "America/New_York" || s.Flow != "declared" || string(s.Input) != "null" {
		t.Errorf("declared schedule stored as %+v", s)
	}
}
