package runtime_test

import (
	"fmt"
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	qflow "github.com/quantumflow/qflow/runtime"
)

func TestSmokeLimits(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow("smoke").
		Step("root", qflow.StepDef{TakesInput: true}).
		MapStep("slow", "root", qflow.StepOptions{Concurrency: 2}).
		MapStep("fast", "root", qflow.StepOptions{}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	var cur, peak atomic.Int64
	var mu sync.Mutex
	h := map[string]qflow.Handler{
		"root": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			return json.RawMessage(`[1,2,3,4,5,6,7,8,9,10,11,12]`), nil
		},
		"slow": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			n := cur.Add(1)
			mu.Lock()
			if n > peak.Load() {
				peak.Store(n)
			}
			mu.Unlock()
			time.Sleep(30 * time.Millisecond)
			cur.Add(-1)
			return json.RawMessage(`1`), nil
		},
		"fast": func(ctx context.Context, task *qflow.Task) (json.RawMessage, error) {
			return json.RawMessage(`1`), nil
		},
	}
	e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 8})
	e.startWorker(def, h, &qflow.WorkerOptions{Concurrency: 8})
	start := time.Now()
	out, err := e.client.RunLocal(ctx, def, h, 1, &qflow.WorkerOptions{Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("out %s peak %d in %s", out, peak.Load(), time.Since(start))
	if peak.Load() > 2 {
		t.Fatalf("peak %d", peak.Load())
	}
}

func TestSmokeKeyGaps(t *testing.T) {
	for i := 0; i < 3; i++ {
		e := newEnv(t)
		startLimitWorkers(t, e, "key", 4, 10)
		type el struct {
			Customer string `json:"customer"`
			N        int    `json:"n"`
		}
		var els []el
		for i := range 200 {
			els = append(els, el{Customer: fmt.Sprintf("c%02d", i%20), N: i})
		}
		startLimitedRuns(t, e, "lim_key", []any{els}, 2*time.Minute)
		var q string
		rows, _ := e.db.Pool.Query(context.Background(), `
		WITH s AS (SELECT key, began, ended, row_number() OVER (PARTITION BY key ORDER BY began) AS n FROM limits_log),
		g AS (SELECT a.key, extract(epoch FROM b.began - a.ended)*1000 AS gap FROM s a JOIN s b ON a.key = b.key AND b.n = a.n + 2)
		SELECT format('gaps ms: p10 %s p50 %s p90 %s max %s; first start spread %s ms',
			round(percentile_cont(0.1) WITHIN GROUP (ORDER BY gap)::numeric,1), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY gap)::numeric,1),
			round(percentile_cont(0.9) WITHIN GROUP (ORDER BY gap)::numeric,1), round(max(gap)::numeric,1),
			(SELECT round(extract(epoch FROM max(began)-min(began))::numeric*1000,1) FROM s WHERE n <= 2)) FROM g`)
		for rows.Next() {
			rows.Scan(&q)
		}
		rows.Close()
		t.Log(q)
	}
}

func TestSmokeClaimCost(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sc := limitsScenarios()["key"]
	def, _ := qflow.NewFlow("lim_k2").MapStep("sync", "", qflow.StepOptions{Concurrency: 2, Key: ".customer"}).Build()
	_ = sc
	type el struct {
		Customer string `json:"customer"`
	}
	var els []el
	for i := range 200 {
		els = append(els, el{Customer: fmt.Sprintf("c%02d", i%20)})
	}
	run, err := e.client.StartFlow(ctx, def, els, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fid int
	e.db.Pool.QueryRow(ctx, `SELECT flow_id FROM qflow.runs WHERE id=$1`, run.ID).Scan(&fid)
	e.db.Pool.Exec(ctx, `ANALYZE qflow.step_tasks`)
	for _, qty := range []int{1, 10, 64} {
		for i := 0; i < 3; i++ {
			tx, _ := e.db.Pool.Begin(ctx)
			began := time.Now()
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM qflow.claim_limited($1, gen_random_uuid(), $2, 60000)`, fid, qty).Scan(&n); err != nil {
				t.Fatal(err)
			}
			t.Logf("qty %d: %d rows in %s", qty, n, time.Since(began))
			tx.Rollback(ctx)
		}
	}
	// unlimited claim for comparison
	def2, _ := qflow.NewFlow("free2").MapStep("sync", "", qflow.StepOptions{}).Build()
	run2, _ := e.client.StartFlow(ctx, def2, els, nil)
	e.db.Pool.QueryRow(ctx, `SELECT flow_id FROM qflow.runs WHERE id=$1`, run2.ID).Scan(&fid)
	for i := 0; i < 3; i++ {
		tx, _ := e.db.Pool.Begin(ctx)
		began := time.Now()
		var n int
		tx.QueryRow(ctx, `SELECT count(*) FROM qflow.claim($1, gen_random_uuid(), 10, 60000)`, fid).Scan(&n)
		t.Logf("plain claim: %d rows in %s", n, time.Since(began))
		tx.Rollback(ctx)
	}
}

func TestSmokeKeyGapsInProc(t *testing.T) {
	for _, nw := range []int{1, 4, -1} {
		e := newEnv(t)
		sc := limitsScenarios()["key"]
		if nw < 0 {
			nw = 1
			sc.def.Steps[1].Options = qflow.StepOptions{}
		}
		e.db.Pool.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS limits_log (
		step text, key text, run_id uuid, idx integer, attempt integer, pid integer, began timestamptz, ended timestamptz)`)
		for range nw {
			e.startWorker(sc.def, limitsHandlers(sc, e.db.Pool), &qflow.WorkerOptions{Concurrency: 40 / nw})
		}
		type el struct {
			Customer string `json:"customer"`
			N        int    `json:"n"`
		}
		var els []el
		for i := range 200 {
			els = append(els, el{Customer: fmt.Sprintf("c%02d", i%20), N: i})
		}
		e.client.DefineFlow(context.Background(), sc.def)
		began := time.Now()
		startLimitedRuns(t, e, "lim_key", []any{els}, 2*time.Minute)
		var q string
		rows, _ := e.db.Pool.Query(context.Background(), `
		WITH s AS (SELECT key, began, ended, row_number() OVER (PARTITION BY key ORDER BY began) AS n FROM limits_log),
		g AS (SELECT a.key, extract(epoch FROM b.began - a.ended)*1000 AS gap FROM s a JOIN s b ON a.key = b.key AND b.n = a.n + 2)
		SELECT format('gaps ms: p10 %s p50 %s p90 %s max %s; first start spread %s ms',
			round(percentile_cont(0.1) WITHIN GROUP (ORDER BY gap)::numeric,1), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY gap)::numeric,1),
			round(percentile_cont(0.9) WITHIN GROUP (ORDER BY gap)::numeric,1), round(max(gap)::numeric,1),
			(SELECT round(extract(epoch FROM max(began)-min(began))::numeric*1000,1) FROM s WHERE n <= 2)) FROM g`)
		for rows.Next() {
			rows.Scan(&q)
		}
		rows.Close()
		t.Log(nw, time.Since(began), q)
	}
}
