package pgmq_test

import (
	"context"
	"encoding/json"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime/pgmq"
)

// Benchmarks for docs/benchmarks.md. The Parallel variants run 8 clients
// (to compare with pgbench -c 8) on a pool of 8 connections; the others run
// one client. Each reports msgs/s.

var benchBody = json.RawMessage(`{"flow":"checkout","step":"charge","run_id":12345,"attempt":1}`)

func benchQueue(b *testing.B, conns int32) (context.Context, *pgxpool.Pool) {
	b.Helper()
	db := pgtest.New(b)
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns, cfg.MinConns = conns, conns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	ctx := context.Background()
	if err := pgmq.Create(ctx, pool, "bench"); err != nil {
		b.Fatal(err)
	}
	return ctx, pool
}

func eightClients(b *testing.B) {
	b.Helper()
	p := 8 / runtime.GOMAXPROCS(0)
	if p < 1 {
		p = 1
	}
	b.SetParallelism(p)
}

func reportRate(b *testing.B, msgs int) {
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkSend(b *testing.B) {
	ctx, pool := benchQueue(b, 1)
	for b.Loop() {
		if _, err := pgmq.Send(ctx, pool, "bench", benchBody, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N)
}

func BenchmarkSendParallel(b *testing.B) {
	ctx, pool := benchQueue(b, 8)
	eightClients(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := pgmq.Send(ctx, pool, "bench", benchBody, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, b.N)
}

// fill sends n messages outside the timer.
func fill(b *testing.B, ctx context.Context, pool *pgxpool.Pool, n int) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	batch := make([]json.RawMessage, 1000)
	for i := range batch {
		batch[i] = benchBody
	}
	for n > 0 {
		k := min(n, len(batch))
		if _, err := pgmq.SendBatch(ctx, pool, "bench", batch[:k], nil); err != nil {
			b.Fatal(err)
		}
		n -= k
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE pgmq.q_bench`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReadDelete measures one consumer cycle: read one message, delete
// it.
func BenchmarkReadDelete(b *testing.B) {
	ctx, pool := benchQueue(b, 1)
	fill(b, ctx, pool, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msgs, err := pgmq.Read(ctx, pool, "bench", time.Minute, 1, nil)
		if err != nil || len(msgs) != 1 {
			b.Fatalf("read: %v, %v", msgs, err)
		}
		if ok, err := pgmq.Delete(ctx, pool, "bench", msgs[0].ID); err != nil || !ok {
			b.Fatalf("delete: %v, %v", ok, err)
		}
	}
	reportRate(b, b.N)
}

func BenchmarkReadDeleteParallel(b *testing.B) {
	ctx, pool := benchQueue(b, 8)
	fill(b, ctx, pool, b.N+100)
	eightClients(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			msgs, err := pgmq.Read(ctx, pool, "bench", time.Minute, 1, nil)
			if err != nil || len(msgs) != 1 {
				b.Errorf("read: %v, %v", msgs, err)
				return
			}
			if ok, err := pgmq.Delete(ctx, pool, "bench", msgs[0].ID); err != nil || !ok {
				b.Errorf("delete: %v, %v", ok, err)
				return
			}
		}
	})
	reportRate(b, b.N)
}

// BenchmarkSendBatch sends batches of 100 messages; msgs/s counts messages.
func BenchmarkSendBatch(b *testing.B) {
	ctx, pool := benchQueue(b, 1)
	batch := make([]json.RawMessage, 100)
	for i := range batch {
		batch[i] = benchBody
	}
	for b.Loop() {
		if _, err := pgmq.SendBatch(ctx, pool, "bench", batch, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N*len(batch))
}
