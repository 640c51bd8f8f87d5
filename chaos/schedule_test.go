//go:build chaos

package chaos

import (
	"context"
	"testing"
	"time"

	qflow "github.com/quantumflow/qflow/runtime"
)

// TestRestartPostgresDuringCronTicks has three worker processes fire a
// per-second schedule while PostgreSQL crash-restarts three times under
// them. Every tick recorded has exactly one run, every run started by the
// schedule has its tick, and all of them complete: a tick cut short by the
// restart fired once afterwards, or (for ticks missed during the outage)
// the latest of them fired once.
func TestRestartPostgresDuringCronTicks(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := qflow.NewClient(c.pool, &qflow.ClientOptions{Logger: quietLog()})
	defer cl.Close()
	if _, err := cl.Schedule(ctx, "chaos_tick", qflow.ScheduleParams{Flow: "chaos", Cron: "* * * * * *", Input: 1}); err != nil {
		t.Fatal(err)
	}
	ws := c.workers(3, envLeaseMS+"=2000", envSleepMS+"=1,5")
	// ticks counts the fired ticks, waiting out a server that is coming
	// back up.
	ticks := func() int {
		for {
			var n int
			err := c.pool.QueryRow(ctx, `SELECT count(*) FROM qflow.schedule_ticks`).Scan(&n)
			if err == nil || ctx.Err() != nil {
				return n
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := range 3 {
		for start := ticks(); ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
			if n := ticks(); n >= start+3 {
				break
			}
		}
		down := c.crashRestart()
		t.Logf("restart %d: down %v", i+1, down.Round(time.Millisecond))
	}
	for start := ticks(); ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		if n := ticks(); n >= start+3 {
			break
		}
	}
	if err := cl.PauseSchedule(ctx, "chaos_tick"); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		var open int
		if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs WHERE status = 'started'`).Scan(&open); err == nil && open == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, w := range ws {
		if w.exitedByItself() {
			t.Errorf("worker %d exited: %s", w.pid, w.stderr)
		}
		w.stop(t)
	}
	var nTicks, withRun, runs, completed, orphans int
	err := c.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM qflow.schedule_ticks),
		(SELECT count(DISTINCT t.run_id) FROM qflow.schedule_ticks t JOIN qflow.runs r ON r.id = t.run_id),
		(SELECT count(*) FROM qflow.runs),
		(SELECT count(*) FROM qflow.runs WHERE status = 'completed'),
		(SELECT count(*) FROM qflow.runs r WHERE NOT EXISTS (SELECT 1 FROM qflow.schedule_ticks t WHERE t.run_id = r.id))`).
		Scan(&nTicks, &withRun, &runs, &completed, &orphans)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RESULT restart-postgres-cron: ticks=%d runs=%d completed=%d", nTicks, runs, completed)
	if completed != runs {
		rows, _ := c.pool.Query(ctx, `SELECT status, coalesce(error, ''), count(*) FROM qflow.runs GROUP BY 1, 2`)
		for rows.Next() {
			var st, e string
			var n int
			_ = rows.Scan(&st, &e, &n)
			t.Logf("runs %s: %d %s", st, n, e)
		}
		rows.Close()
	}
	if nTicks < 12 || withRun != nTicks || runs != nTicks || orphans != 0 || completed != runs {
		t.Errorf("ticks %d (want at least 12), ticks with a distinct run %d, runs %d, runs without a tick %d, completed %d: want one run per tick, all completed",
			nTicks, withRun, runs, orphans, completed)
	}
}
