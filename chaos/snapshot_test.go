//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BenchmarkOldSnapshot keeps three workers busy with a steady stream of
// runs and measures task throughput and dead rows in the engine's tables
// before, during and after a session that sits idle in a transaction
// holding an old snapshot (REPEATABLE READ) for a minute
// (CHAOS_HOLD=30s to shorten it). It reports numbers; it does not judge.
func BenchmarkOldSnapshot(b *testing.B) {
	hold := time.Minute
	if d, err := time.ParseDuration(os.Getenv("CHAOS_HOLD")); err == nil {
		hold = d
	}
	for range b.N {
		runOldSnapshot(b, hold)
	}
}

func runOldSnapshot(b *testing.B, hold time.Duration) {
	{
		c := newCluster(b)
		ctx := context.Background()
		c.workers(3, envLeaseMS+"=5000", envSleepMS+"=1,5")
		// Feed: keep about 200 runs in flight.
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var open int
				_ = c.pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs WHERE status = 'started'`).Scan(&open)
				if open < 200 {
					inputs := make([]string, 50)
					for i := range inputs {
						inputs[i] = "1"
					}
					_, _ = c.pool.Exec(ctx, `SELECT qflow.start_runs((SELECT id FROM qflow.flows WHERE slug = 'chaos'), $1::jsonb[], '{"events":false}')`, inputs)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		defer close(stop)
		measure := func(name string, d time.Duration) string {
			n0, _ := c.completedTasks(ctx)
			time.Sleep(d)
			n1, _ := c.completedTasks(ctx)
			var dead, live int64
			var detail string
			_ = c.pool.QueryRow(ctx, `SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(n_live_tup), 0),
				string_agg(relname || '=' || n_dead_tup, ' ' ORDER BY n_dead_tup DESC)
				FROM pg_stat_user_tables WHERE schemaname IN ('qflow', 'pgmq')`).Scan(&dead, &live, &detail)
			line := fmt.Sprintf("%-7s %6.0f tasks/s  dead rows %7d  live rows %7d  (%s)", name, float64(n1-n0)/d.Seconds(), dead, live, firstN(detail, 4))
			b.Log(line)
			return line
		}
		time.Sleep(3 * time.Second) // warm up
		measure("before", 15*time.Second)
		conn, err := pgx.Connect(ctx, c.url)
		if err != nil {
			b.Fatal(err)
		}
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			b.Fatal(err)
		}
		_, _ = tx.Exec(ctx, `SELECT count(*) FROM qflow.runs`) // take the snapshot
		third := hold / 3
		measure("during", third)
		measure("during", third)
		measure("during", hold-2*third)
		_ = tx.Rollback(ctx)
		conn.Close(ctx)
		measure("after", 15*time.Second)
		measure("after", 15*time.Second)
	}
}

func firstN(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}
