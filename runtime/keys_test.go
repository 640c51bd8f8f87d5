package runtime_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

// TestStartKey: a start with a key already used for the flow returns that
// run, with a nil error and nothing started, in StartRun, StartFlow (which
// says so) and StartRunTx, across versions of the flow; other flows and
// other keys start their own runs; a rolled-back start holds no key.
func TestStartKey(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, _ := chain3(t, "keyed")
	h, err := e.client.StartFlow(ctx, def, map[string]int{"v": 1}, &qflow.StartOptions{Key: "order-1"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Existing {
		t.Fatal("the first start of a key reports an existing run")
	}
	again, err := e.client.StartRun(ctx, "keyed", map[string]int{"v": 2}, &qflow.StartOptions{Key: "order-1"})
	if err != nil || again != h.ID {
		t.Fatalf("StartRun with the same key = %s, %v; want %s, nil", again, err, h.ID)
	}
	h2, err := e.client.StartFlow(ctx, def, map[string]int{"v": 3}, &qflow.StartOptions{Key: "order-1"})
	if err != nil || h2.ID != h.ID || !h2.Existing {
		t.Fatalf("StartFlow with the same key = %+v, %v; want the first run, Existing", h2, err)
	}
	// A new version of the flow (another shape, same slug) shares its keys.
	v2 := def
	v2.Options.Retries = 6
	h3, err := e.client.StartFlow(ctx, v2, map[string]int{"v": 4}, &qflow.StartOptions{Key: "order-1"})
	if err != nil || h3.ID != h.ID || !h3.Existing {
		t.Fatalf("a new version, same key = %+v, %v; want the first run", h3, err)
	}
	other, _ := chain3(t, "keyed_other")
	h4, err := e.client.StartFlow(ctx, other, map[string]int{"v": 5}, &qflow.StartOptions{Key: "order-1"})
	if err != nil || h4.ID == h.ID || h4.Existing {
		t.Fatalf("another flow, same key = %+v, %v; want a run of its own", h4, err)
	}
	r, err := e.client.GetRun(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Key != "order-1" || string(r.Input) != `{"v": 1}` {
		t.Fatalf("run key %q input %s; want order-1 and the first input", r.Key, r.Input)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs WHERE flow_slug = 'keyed'`, 1)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks t JOIN qflow.runs r ON r.id = t.run_id WHERE r.flow_slug = 'keyed'`, 1)

	// StartRunTx: the key is held from the start, and only if tx commits.
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rolled, err := e.client.StartRunTx(ctx, tx, "keyed", map[string]int{"v": 6}, &qflow.StartOptions{Key: "tx-1"})
	if err != nil {
		t.Fatal(err)
	}
	if same, err := e.client.StartRunTx(ctx, tx, "keyed", map[string]int{"v": 7}, &qflow.StartOptions{Key: "tx-1"}); err != nil || same != rolled {
		t.Fatalf("the same key twice in one transaction = %s, %v; want %s", same, err, rolled)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var committed uuid.UUID
	err = pgx.BeginFunc(ctx, e.db.Pool, func(tx pgx.Tx) error {
		var err error
		committed, err = e.client.StartRunTx(ctx, tx, "keyed", map[string]int{"v": 8}, &qflow.StartOptions{Key: "tx-1"})
		return err
	})
	if err != nil || committed == rolled {
		t.Fatalf("after a rollback the key starts a new run: %s, %v (rolled back %s)", committed, err, rolled)
	}
	if id, err := e.client.StartRun(ctx, "keyed", nil, &qflow.StartOptions{Key: "tx-1"}); err != nil || id != committed {
		t.Fatalf("the committed key = %s, %v; want %s", id, err, committed)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs WHERE flow_slug = 'keyed'`, 2)
}

// TestStartKeyBadInput: keys over MaxKeyBytes, invalid UTF-8 or with NUL,
// both Key and Keys, and Keys of the wrong length are refused with
// ErrBadInput before anything is written; SQL callers get the same limit.
func TestStartKeyBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, _ := chain3(t, "keybad")
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]qflow.StartOptions{
		"256 bytes":    {Key: strings.Repeat("k", qflow.MaxKeyBytes+1)},
		"invalid utf8": {Key: "a\xffb"},
		"NUL":          {Key: "a\x00b"},
		"both":         {Key: "a", Keys: []string{"b"}},
		"keys length":  {Keys: []string{"a", "b"}},
		"bad keys[0]":  {Keys: []string{strings.Repeat("é", 128)}},
	} {
		if _, err := e.client.StartRun(ctx, "keybad", nil, &o); !errors.Is(err, qflow.ErrBadInput) {
			t.Errorf("%s: %v; want ErrBadInput", name, err)
		}
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 0)
	if _, err := e.client.StartRun(ctx, "keybad", nil, &qflow.StartOptions{Key: strings.Repeat("é", qflow.MaxKeyBytes/2) + "k"}); err != nil {
		t.Fatalf("a key of exactly MaxKeyBytes: %v", err)
	}
	_, err := e.db.Pool.Exec(ctx, `SELECT qflow.start_runs(id, ARRAY['{}'::jsonb], jsonb_build_object('key', repeat('k', 256)))
		FROM qflow.flows WHERE slug = 'keybad'`)
	if err == nil || !strings.Contains(err.Error(), "over 255 bytes") {
		t.Fatalf("SQL with a 256-byte key: %v", err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 1)
}

// TestStartRunsKeys: StartRuns takes one key per input (Keys) or one for
// all (Key); a key repeated within the call, or already held, gets the run
// of its first holder, and only new runs get tasks.
func TestStartRunsKeys(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, _ := chain3(t, "keyed_many")
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	in := func(v int) any { return map[string]int{"v": v} }
	ids, err := e.client.StartRuns(ctx, "keyed_many", []any{in(1), in(2), in(3), in(4), in(5)},
		&qflow.StartOptions{Keys: []string{"a", "b", "a", "", ""}})
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != ids[2] || ids[0] == ids[1] || ids[3] == ids[4] || ids[3] == ids[0] || ids[3] == ids[1] {
		t.Fatalf("ids %v: want input 2 to get input 0's run and the others their own", ids)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 4)
	r, err := e.client.GetRun(ctx, ids[0])
	if err != nil || string(r.Input) != `{"v": 1}` {
		t.Fatalf("run of key a: input %s, %v; want the first input's", r.Input, err)
	}
	more, err := e.client.StartRuns(ctx, "keyed_many", []any{in(6), in(7)}, &qflow.StartOptions{Keys: []string{"b", "c"}})
	if err != nil || more[0] != ids[1] || more[1] == ids[1] {
		t.Fatalf("second call = %v, %v; want b's run and a new one", more, err)
	}
	all, err := e.client.StartRuns(ctx, "keyed_many", []any{in(8), in(9), in(10)}, &qflow.StartOptions{Key: "z"})
	if err != nil || all[0] != all[1] || all[1] != all[2] {
		t.Fatalf("one Key for three inputs = %v, %v; want one run", all, err)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.runs`, 6)
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks`, 6) // one root task per run
}

// TestStartKeyConcurrent: 8 goroutines starting one key at once get one
// run, both through one client (whose batcher must not merge keyed starts)
// and through 8 clients on 8 pools, racing in the database.
func TestStartKeyConcurrent(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	def, _ := chain3(t, "keyed_race")
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	race := func(key string, client func(i int) *qflow.Client) {
		t.Helper()
		const n = 8
		ids := make([]uuid.UUID, n)
		errs := make([]error, n)
		var ready, wg sync.WaitGroup
		gate := make(chan struct{})
		ready.Add(n)
		wg.Add(n)
		for i := range n {
			c := client(i)
			go func() {
				defer wg.Done()
				ready.Done()
				<-gate
				ids[i], errs[i] = c.StartRun(ctx, "keyed_race", map[string]int{"v": i}, &qflow.StartOptions{Key: key})
			}()
		}
		ready.Wait()
		close(gate)
		wg.Wait()
		for i := range n {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Fatalf("%s: start %d = %s, %v; want %s", key, i, ids[i], errs[i], ids[0])
			}
		}
		var runs, tasks int
		if err := e.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM qflow.runs WHERE idempotency_key = $1),
			(SELECT count(*) FROM qflow.step_tasks t JOIN qflow.runs r ON r.id = t.run_id WHERE r.idempotency_key = $1)`, key).
			Scan(&runs, &tasks); err != nil {
			t.Fatal(err)
		}
		if runs != 1 || tasks != 1 {
			t.Fatalf("%s: %d runs with %d tasks; want 1 and 1", key, runs, tasks)
		}
	}
	race("one-client", func(int) *qflow.Client { return e.client })
	clients := make([]*qflow.Client, 8)
	for i := range clients {
		pool, err := pgxpool.New(ctx, e.db.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if err := pool.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		clients[i] = qflow.NewClient(pool, &qflow.ClientOptions{Logger: quiet()})
	}
	for round := range 5 {
		race("many-clients-"+string(rune('a'+round)), func(i int) *qflow.Client { return clients[i] })
	}
}

// TestStartKeyLocalClaimsNothingOfAnExistingRun: a start from a client
// whose pool runs a local worker claims the new run's first tasks in the
// same transaction (start_runs_claim); a keyed start that finds its run
// must not claim that run's queued tasks.
func TestStartKeyLocalClaimsNothingOfAnExistingRun(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, _ := chain3(t, "keyed_local")
	flowID, err := e.client.DefineFlow(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.client.StartRun(ctx, "keyed_local", map[string]int{"v": 1}, &qflow.StartOptions{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	// What a local worker's start sends, as worker 'w' of this version.
	var ids []uuid.UUID
	var seq []int64
	var existing []bool
	if err := e.db.Pool.QueryRow(ctx, `SELECT o_ids, o_seq, o_existing FROM qflow.start_runs_claim($1::integer,
		ARRAY['{"v": 2}'::jsonb, '{"v": 3}'::jsonb], '{"keys": ["k", "new"]}'::jsonb, gen_random_uuid(), $1::integer, 10, 30000, true)`, flowID).
		Scan(&ids, &seq, &existing); err != nil {
		t.Fatal(err)
	}
	if ids[0] != id || !existing[0] || existing[1] {
		t.Fatalf("ids %v existing %v; want %s existing, then a new run", ids, existing, id)
	}
	if len(seq) != 1 {
		t.Fatalf("claimed %d tasks; want only the new run's first", len(seq))
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'queued' AND attempts = 0 AND run_id = '`+id.String()+`'`, 1)

	// End to end through a local worker: the duplicate is answered, the
	// run completes once.
	_, h := chain3(t, "keyed_local")
	e.startWorker(def, h, nil)
	h2, err := e.client.StartFlow(ctx, def, map[string]int{"v": 9}, &qflow.StartOptions{Key: "k"})
	if err != nil || h2.ID != id || !h2.Existing {
		t.Fatalf("StartFlow with a local worker = %+v, %v", h2, err)
	}
	out, err := h2.Wait(ctx)
	if err != nil || string(out) != `{"c": {"v": 4}}` {
		t.Fatalf("output %s, %v", out, err)
	}
}

// TestPrunedKeyIsFree: a key lives as long as its run; once Prune deletes
// the run the key starts a new one.
func TestPrunedKeyIsFree(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, h := chain3(t, "keyed_prune")
	e.startWorker(def, h, nil)
	first, err := e.client.StartFlow(ctx, def, map[string]int{"v": 1}, &qflow.StartOptions{Key: "job-7"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if again, err := e.client.StartFlow(ctx, def, map[string]int{"v": 2}, &qflow.StartOptions{Key: "job-7"}); err != nil || again.ID != first.ID {
		t.Fatalf("before pruning: %+v, %v; want the finished run", again, err)
	}
	time.Sleep(20 * time.Millisecond)
	res, err := e.client.Prune(ctx, qflow.PruneOptions{OlderThan: 10 * time.Millisecond})
	if err != nil || res.Runs != 1 {
		t.Fatalf("prune: %+v, %v", res, err)
	}
	next, err := e.client.StartFlow(ctx, def, map[string]int{"v": 3}, &qflow.StartOptions{Key: "job-7"})
	if err != nil || next.ID == first.ID || next.Existing {
		t.Fatalf("after pruning: %+v, %v; want a new run", next, err)
	}
	out, err := next.Wait(ctx)
	if err != nil || string(out) != `{"c": {"v": 6}}` {
		t.Fatalf("new run: %s, %v", out, err)
	}
}
