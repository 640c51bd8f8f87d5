package runtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/pgtest"
	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/pgmq"
)

// hostileNames would break out of an identifier, a string literal or a
// dollar-quoted body if any reached SQL unquoted.
var hostileNames = []string{
	`x"; DROP TABLE qflow.runs; --`,
	`x'); DROP TABLE qflow.runs; --`,
	`x$$; DROP TABLE qflow.runs; $$`,
	"x\x00y", "x\ny", "x y", "x-y", "x.y", "pgmq.meta", "../../etc/passwd", "ünïcode", "x\u212a",
	strings.Repeat("a", 48), strings.Repeat("a", 10_000), "",
}

// badSlugs are refused as flow and step slugs although they would be
// valid queue names (upper case; too long for <slug>_<version>), and "run"
// is reserved for steps.
var badSlugs = []string{"X", "Etl", strings.Repeat("a", 41)}

// schemaFingerprint lists every relation and function in the qflow and
// pgmq schemas with its owner: a name that reached SQL unquoted would
// change it.
func schemaFingerprint(t *testing.T, db qflow.DB) string {
	t.Helper()
	var fp string
	err := db.QueryRow(context.Background(), `
		SELECT string_agg(x, ',' ORDER BY x) FROM (
			SELECT n.nspname || '.' || c.relname || ':' || c.relkind::text AS x FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname IN ('qflow', 'pgmq')
			UNION ALL
			SELECT n.nspname || '.' || p.proname || '()' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname IN ('qflow', 'pgmq')) s`).Scan(&fp)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// TestHostileNamesAtEveryEntryPoint sends hostile flow, step and queue
// names through every public entry point that takes a name, and hostile
// JSON through every one that takes a document: each is refused with the
// package's typed error (or stored verbatim, for JSON), and the schema is
// unchanged.
func TestHostileNamesAtEveryEntryPoint(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	good := single("good", qflow.StepOptions{})
	if _, err := e.client.DefineFlow(ctx, good); err != nil {
		t.Fatal(err)
	}
	if err := pgmq.Create(ctx, e.db.Pool, "goodq"); err != nil {
		t.Fatal(err)
	}
	before := schemaFingerprint(t, e.db.Pool)
	noop := map[string]qflow.Handler{"only": func(context.Context, *qflow.Task) (json.RawMessage, error) { return nil, nil }}

	expect := func(what, name string, err, want error) {
		t.Helper()
		if err == nil || !errors.Is(err, want) {
			t.Errorf("%s(%.60q): %.200v; want an error wrapping %v", what, name, err, want)
		}
	}
	for _, name := range hostileNames {
		// Flow slugs.
		_, err := e.client.StartRun(ctx, name, 1, nil)
		expect("StartRun", name, err, qflow.ErrUnknownFlow)
		_, err = e.client.StartRuns(ctx, name, []any{1, 2}, nil)
		expect("StartRuns", name, err, qflow.ErrUnknownFlow)
		tx, err := e.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.client.StartRunTx(ctx, tx, name, 1, nil)
		expect("StartRunTx", name, err, qflow.ErrUnknownFlow)
		_ = tx.Rollback(ctx)
		_, err = e.client.DefineFlow(ctx, single(name, qflow.StepOptions{}))
		expect("DefineFlow(flow)", name, err, qflow.ErrInvalidFlow)
		_, err = e.client.StartFlow(ctx, single(name, qflow.StepOptions{}), 1, nil)
		expect("StartFlow(flow)", name, err, qflow.ErrInvalidFlow)
		_, err = qflow.NewFlow(name).Step("a", qflow.StepDef{}).Build()
		expect("NewFlow", name, err, qflow.ErrInvalidFlow)
		if err := qflow.NewWorker(e.db.Pool, nil).Register(single(name, qflow.StepOptions{}), noop); err == nil {
			t.Errorf("Register(flow %.60q) accepted", name)
		}
		if f, err := e.client.GetFlow(ctx, name); err == nil && f != nil {
			t.Errorf("GetFlow(%.60q) found %+v", name, f)
		}
		if runs, err := e.client.ListRuns(ctx, qflow.ListRunsParams{Flow: name, Status: name}); err == nil && len(runs) > 0 {
			t.Errorf("ListRuns(%.60q) returned %d runs", name, len(runs))
		}

		// Step slugs, in every position.
		for _, def := range []qflow.FlowDef{
			{Slug: "ok", Steps: []qflow.StepDef{{Slug: name}}},
			{Slug: "ok", Steps: []qflow.StepDef{{Slug: "a", DependsOn: []string{name}}}},
			{Slug: "ok", Steps: []qflow.StepDef{{Slug: "a"}, {Slug: name, Map: true, DependsOn: []string{"a"}}}},
		} {
			_, err = e.client.DefineFlow(ctx, def)
			expect("DefineFlow(step)", name, err, qflow.ErrInvalidFlow)
		}
		_, err = qflow.NewFlow("ok").Step("a", qflow.StepDef{}).MapStep(name, "a", qflow.StepOptions{}).Build()
		expect("MapStep", name, err, qflow.ErrInvalidFlow)
		if err := qflow.NewWorker(e.db.Pool, nil).Register(good, map[string]qflow.Handler{"only": noop["only"], name: noop["only"]}); err == nil {
			t.Errorf("Register(handler %.60q) accepted", name)
		}

		// The engine's own SQL checks too, for callers that skip the client.
		var id int
		err = e.db.Pool.QueryRow(ctx, `SELECT qflow.define_flow($1::text, 'h', $2::jsonb)`, name,
			fmt.Sprintf(`{"slug":%q,"steps":[{"slug":"a"}]}`, strings.ToValidUTF8(strings.ReplaceAll(name, "\x00", ""), "?"))).Scan(&id)
		if err == nil {
			t.Errorf("qflow.define_flow(%.60q) accepted", name)
		}

		// Queue names: every pgmq function that takes one refuses the names
		// pgmq refuses. Hostile names pgmq accepts (hyphens, spaces, dots,
		// quotes) are quoted instead: runtime/pgmq's TestAcceptedNames runs
		// every call with them.
		if pgmq.ValidateQueueName(name) == nil {
			continue
		}
		msg := json.RawMessage(`{}`)
		for op, call := range map[string]func() error{
			"Create":               func() error { return pgmq.Create(ctx, e.db.Pool, name) },
			"CreateNonPartitioned": func() error { return pgmq.CreateNonPartitioned(ctx, e.db.Pool, name) },
			"CreateUnlogged":       func() error { return pgmq.CreateUnlogged(ctx, e.db.Pool, name) },
			"CreatePartitioned":    func() error { return pgmq.CreatePartitioned(ctx, e.db.Pool, name, nil) },
			"DropQueue":            func() error { _, err := pgmq.DropQueue(ctx, e.db.Pool, name); return err },
			"PurgeQueue":           func() error { _, err := pgmq.PurgeQueue(ctx, e.db.Pool, name); return err },
			"QueueMetrics":         func() error { _, err := pgmq.QueueMetrics(ctx, e.db.Pool, name); return err },
			"EnableNotifyInsert":   func() error { return pgmq.EnableNotifyInsert(ctx, e.db.Pool, name, time.Second) },
			"DisableNotifyInsert":  func() error { return pgmq.DisableNotifyInsert(ctx, e.db.Pool, name) },
			"Send":                 func() error { _, err := pgmq.Send(ctx, e.db.Pool, name, msg, nil); return err },
			"SendBatch":            func() error { _, err := pgmq.SendBatch(ctx, e.db.Pool, name, []json.RawMessage{msg}, nil); return err },
			"Read":                 func() error { _, err := pgmq.Read(ctx, e.db.Pool, name, time.Second, 1, nil); return err },
			"ReadWithPoll":         func() error { _, err := pgmq.ReadWithPoll(ctx, e.db.Pool, name, time.Second, 1, nil); return err },
			"Pop":                  func() error { _, err := pgmq.Pop(ctx, e.db.Pool, name); return err },
			"PopBatch":             func() error { _, err := pgmq.PopBatch(ctx, e.db.Pool, name, 2); return err },
			"Archive":              func() error { _, err := pgmq.Archive(ctx, e.db.Pool, name, 1); return err },
			"ArchiveBatch":         func() error { _, err := pgmq.ArchiveBatch(ctx, e.db.Pool, name, []int64{1}); return err },
			"Delete":               func() error { _, err := pgmq.Delete(ctx, e.db.Pool, name, 1); return err },
			"DeleteBatch":          func() error { _, err := pgmq.DeleteBatch(ctx, e.db.Pool, name, []int64{1}); return err },
			"SetVT":                func() error { _, err := pgmq.SetVT(ctx, e.db.Pool, name, 1, time.Second); return err },
			"SetVTBatch":           func() error { _, err := pgmq.SetVTBatch(ctx, e.db.Pool, name, []int64{1}, time.Second); return err },
		} {
			expect("pgmq."+op, name, call(), pgmq.ErrInvalidQueueName)
		}
	}
	// pgmq's SQL functions quote what they are given (the same names through SQL).
	for _, name := range hostileNames {
		if strings.ContainsRune(name, 0) || pgmq.ValidateQueueName(name) == nil {
			continue
		}
		if _, err := e.db.Pool.Exec(ctx, `SELECT pgmq.create($1::text)`, name); err == nil {
			t.Errorf("pgmq.create(%.60q) accepted", name)
		}
	}
	for _, name := range badSlugs {
		_, err := e.client.DefineFlow(ctx, single(name, qflow.StepOptions{}))
		expect("DefineFlow(flow)", name, err, qflow.ErrInvalidFlow)
		_, err = e.client.StartRun(ctx, name, 1, nil)
		expect("StartRun", name, err, qflow.ErrUnknownFlow)
	}
	for _, name := range append(badSlugs, "run") {
		_, err := e.client.DefineFlow(ctx, qflow.FlowDef{Slug: "ok", Steps: []qflow.StepDef{{Slug: name}}})
		expect("DefineFlow(step)", name, err, qflow.ErrInvalidFlow)
	}

	// Hostile JSON is data: stored and returned verbatim.
	docs := []string{
		`{"'; DROP TABLE qflow.runs; --":"$$; DROP TABLE qflow.runs; $$"}`,
		`["\"); DROP TABLE qflow.runs; --", "\u2028", "\\u0000"]`,
		`{"run":"x","a":{"b":[null,true,1.5e300]}}`,
	}
	for _, d := range docs {
		id, err := e.client.StartRun(ctx, "good", json.RawMessage(d), nil)
		if err != nil {
			t.Fatalf("StartRun(%s): %v", d, err)
		}
		run, err := e.client.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var want, got any
		_ = json.Unmarshal([]byte(d), &want)
		_ = json.Unmarshal(run.Input, &got)
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Errorf("stored %s for %s", run.Input, d)
		}
	}
	if after := schemaFingerprint(t, e.db.Pool); after != before {
		t.Errorf("the schema changed:\nbefore %s\nafter  %s", before, after)
	}
}

// LeastPrivilegeGrants are the grants docs/reliability.md tells operators
// to run for the application role (here %[1]s), after migrating as the
// schema owner. Keep the two in sync.
const LeastPrivilegeGrants = `
GRANT USAGE ON SCHEMA qflow TO %[1]s;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA qflow TO %[1]s;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA qflow TO %[1]s;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA qflow TO %[1]s;
`

// appRole creates a login role that is not a superuser and owns nothing,
// grants it what grants lists, and returns a pool connected as it.
func appRole(t *testing.T, e *env, grants ...string) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	role := fmt.Sprintf("qflow_app_%08x", rand.Uint32())
	ident := pgx.Identifier{role}.Sanitize()
	if _, err := e.db.Pool.Exec(ctx, `CREATE ROLE `+ident+` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := e.db.Pool.Exec(ctx, `DROP OWNED BY `+ident); err != nil {
			t.Logf("drop owned by %s: %v", role, err)
		}
		c, err := pgx.Connect(ctx, pgtest.AdminURL(t))
		if err != nil {
			t.Log(err)
			return
		}
		defer c.Close(ctx)
		// The database is dropped after this; the role's default privileges live in it.
		_, _ = c.Exec(ctx, `DROP ROLE IF EXISTS `+ident)
	})
	for _, g := range grants {
		if _, err := e.db.Pool.Exec(ctx, fmt.Sprintf(g, ident)); err != nil {
			t.Fatalf("%s: %v", fmt.Sprintf(g, ident), err)
		}
	}
	cfg, err := pgxpool.ParseConfig(e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.User = role
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var super bool
	if err := pool.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil || super {
		t.Fatalf("role %s: superuser=%v, %v", role, super, err)
	}
	return pool, role
}

func runDiamond(t *testing.T, pool *pgxpool.Pool, slug string) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	def, err := qflow.NewFlow(slug).
		Step("split", qflow.StepDef{TakesInput: true}).
		MapStep("each", "split", qflow.StepOptions{}).
		Step("count", qflow.StepDef{DependsOn: []string{"split"}}).
		Step("join", qflow.StepDef{DependsOn: []string{"each", "count"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	c := qflow.NewClient(pool, &qflow.ClientOptions{Logger: quiet()})
	defer c.Close()
	out, err := c.RunLocal(ctx, def, map[string]qflow.Handler{
		"split": qflow.HandlerFunc(func(_ context.Context, in struct{ Run int }) ([]int, error) {
			s := make([]int, in.Run)
			for i := range s {
				s[i] = i
			}
			return s, nil
		}),
		"each":  qflow.HandlerFunc(func(_ context.Context, v int) (int, error) { return v * v, nil }),
		"count": qflow.HandlerFunc(func(_ context.Context, in struct{ Split []int }) (int, error) { return len(in.Split), nil }),
		"join": qflow.HandlerFunc(func(_ context.Context, in struct {
			Each  []int
			Count int
		}) (int, error) {
			s := 0
			for _, v := range in.Each {
				s += v
			}
			return s + in.Count, nil
		}),
	}, 5, &qflow.WorkerOptions{Logger: quiet(), PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("RunLocal as a least-privilege role: %v", err)
	}
	if got := decode[map[string]int](t, out)["join"]; got != 0+1+4+9+16+5 {
		t.Fatalf("join = %d", got)
	}
	// Inspecting, listing and cancelling work too.
	h, err := c.StartFlow(ctx, def, 3, &qflow.StartOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetRun(ctx, h.ID); err != nil {
		t.Fatal(err)
	}
	if runs, err := c.ListRuns(ctx, qflow.ListRunsParams{Flow: slug}); err != nil || len(runs) != 2 {
		t.Fatalf("ListRuns: %d runs, %v", len(runs), err)
	}
	if _, err := c.GetFlow(ctx, slug); err != nil {
		t.Fatal(err)
	}
}

// TestLeastPrivilegeRole runs flows end to end as a role that is not a
// superuser and owns nothing: first a flow the schema owner defined (the
// deploy-time path, e.g. qflowgen -sql), then, with CREATE on schema pgmq
// added, a flow the application defines itself.
func TestLeastPrivilegeRole(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	// Deploy time, as the owner: the flow (and its queue) exist already.
	predef, err := qflow.NewFlow("predefined").
		Step("split", qflow.StepDef{TakesInput: true}).
		MapStep("each", "split", qflow.StepOptions{}).
		Step("count", qflow.StepDef{DependsOn: []string{"split"}}).
		Step("join", qflow.StepDef{DependsOn: []string{"each", "count"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.DefineFlow(ctx, predef); err != nil {
		t.Fatal(err)
	}
	pool, role := appRole(t, e, LeastPrivilegeGrants)
	runDiamond(t, pool, "predefined")

	// The engine keeps its tasks in its own tables: defining a new flow at
	// run time needs no CREATE anywhere, and nothing pgmq.
	runDiamond(t, pool, "appdefined")

	// The role owns nothing.
	var owned []string
	rows, err := e.db.Pool.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = $1) AND c.relkind = 'r' ORDER BY 1`, role)
	if err == nil {
		owned, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range owned {
		t.Errorf("role owns %s", o)
	}
}

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecretsStayOutOfLogsAndErrors: a password in the connection string
// never appears in what the runtime logs or returns, even while its
// connections are being killed and re-established, or cannot be made.
func TestSecretsStayOutOfLogsAndErrors(t *testing.T) {
	const secret = "s3cr3t-Pa55w0rd-XYZZY"
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	cfg, err := pgxpool.ParseConfig(e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Password = secret // trust auth ignores it; pgx keeps it
	cfg.ConnConfig.RuntimeParams["application_name"] = "qflow_secret_test"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := qflow.NewClient(pool, &qflow.ClientOptions{Logger: log})
	defer c.Close()
	def := single("secretive", qflow.StepOptions{})
	w := qflow.NewWorker(pool, &qflow.WorkerOptions{Logger: log, PollInterval: 50 * time.Millisecond})
	if err := w.Register(def, map[string]qflow.Handler{"only": func(_ context.Context, task *qflow.Task) (json.RawMessage, error) {
		return task.Input, nil
	}}); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	var errs []string
	for i := range 5 {
		h, err := c.StartFlow(ctx, def, i, nil)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		// Kill every connection of the pool: listeners, heartbeats and
		// waiters must reconnect and say so in the log.
		_, _ = e.db.Pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'qflow_secret_test'`)
		if _, err := h.Wait(ctx); err != nil {
			errs = append(errs, err.Error())
		}
	}
	stop()
	if err := <-done; err != nil {
		errs = append(errs, err.Error())
	}
	if !strings.Contains(logs.String(), "reconnect") {
		t.Logf("no reconnect logged; the check below is weaker")
	}
	// Connection failures: a closed port, a bad host, a malformed string.
	for _, u := range []string{
		"postgres://app:" + secret + "@127.0.0.1:1/db?connect_timeout=2",
		"postgres://app:" + secret + "@no-such-host.invalid:5432/db?connect_timeout=2",
		"postgres://app:" + secret + "@127.0.0.1:5432/db?sslmode=bogus",
		"host=127.0.0.1 port=1 user=app password=" + secret + " connect_timeout=2",
		"postgres://app:" + secret + "@[::1:5432/db",
	} {
		p, err := pgxpool.New(ctx, u)
		if err == nil {
			c := qflow.NewClient(p, &qflow.ClientOptions{Logger: log})
			_, err = c.StartRun(ctx, "secretive", 1, nil)
			if err == nil {
				_, err = c.DefineFlow(ctx, def)
			}
			c.Close()
			p.Close()
		}
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	all := logs.String() + strings.Join(errs, "\n")
	if strings.Contains(all, secret) {
		for _, line := range strings.Split(all, "\n") {
			if strings.Contains(line, secret) {
				t.Errorf("secret leaked: %s", line)
			}
		}
	}
	if len(errs) < 5 {
		t.Errorf("expected connection errors to inspect, got %d: %q", len(errs), errs)
	}
}
