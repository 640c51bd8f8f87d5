package pgmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/quantumflow/qflow/internal/pgmqfixture"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime/pgmq"
)

// apiCalls runs every function of the package once on queue q.
var apiCalls = []struct {
	name string
	call func(ctx context.Context, db pgmq.DBTX, q string) error
}{
	{"Create", func(ctx context.Context, db pgmq.DBTX, q string) error { return pgmq.Create(ctx, db, q) }},
	{"CreateUnlogged", func(ctx context.Context, db pgmq.DBTX, q string) error { return pgmq.CreateUnlogged(ctx, db, q+"_u") }},
	{"ListQueues", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.ListQueues(ctx, db)
		return err
	}},
	{"Send", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.Send(ctx, db, q, raw(`{"n":1}`), nil)
		return err
	}},
	{"Send/Delay", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.Send(ctx, db, q, raw(`{"n":2}`), &pgmq.SendOpts{Delay: time.Second})
		return err
	}},
	{"Send/VisibleAt", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.Send(ctx, db, q, raw(`{"n":3}`), &pgmq.SendOpts{VisibleAt: time.Now()})
		return err
	}},
	{"Send/Headers", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.Send(ctx, db, q, raw(`{"n":4}`), &pgmq.SendOpts{Headers: raw(`{"h":1}`)})
		return err
	}},
	{"SendBatch", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.SendBatch(ctx, db, q, []json.RawMessage{raw(`{"n":5}`), raw(`{"n":6}`)}, nil)
		return err
	}},
	{"SendBatch/Headers", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.SendBatch(ctx, db, q, []json.RawMessage{raw(`{"n":7}`)}, &pgmq.SendBatchOpts{Headers: []json.RawMessage{raw(`{}`)}})
		return err
	}},
	{"Read", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.Read(ctx, db, q, time.Second, 1, nil)
		return err
	}},
	{"ReadWithPoll", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.ReadWithPoll(ctx, db, q, time.Second, 1, &pgmq.PollOpts{MaxPoll: time.Second, PollInterval: 10 * time.Millisecond})
		return err
	}},
	{"Pop", func(ctx context.Context, db pgmq.DBTX, q string) error { _, err := pgmq.Pop(ctx, db, q); return err }},
	{"PopBatch", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.PopBatch(ctx, db, q, 2)
		return err
	}},
	{"SetVT", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.SetVT(ctx, db, q, 1, 0)
		return err
	}},
	{"SetVTBatch", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.SetVTBatch(ctx, db, q, []int64{1}, 0)
		return err
	}},
	{"Archive", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.Archive(ctx, db, q, 2)
		return err
	}},
	{"ArchiveBatch", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.ArchiveBatch(ctx, db, q, []int64{3})
		return err
	}},
	{"Delete", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.Delete(ctx, db, q, 4)
		return err
	}},
	{"DeleteBatch", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.DeleteBatch(ctx, db, q, []int64{5})
		return err
	}},
	{"QueueMetrics", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.QueueMetrics(ctx, db, q)
		return err
	}},
	{"MetricsAll", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.MetricsAll(ctx, db)
		return err
	}},
	{"EnableNotifyInsert", func(ctx context.Context, db pgmq.DBTX, q string) error {
		return pgmq.EnableNotifyInsert(ctx, db, q, 0)
	}},
	{"DisableNotifyInsert", func(ctx context.Context, db pgmq.DBTX, q string) error { return pgmq.DisableNotifyInsert(ctx, db, q) }},
	{"PurgeQueue", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.PurgeQueue(ctx, db, q)
		return err
	}},
	{"DropQueue", func(ctx context.Context, db pgmq.DBTX, q string) error {
		_, err := pgmq.DropQueue(ctx, db, q)
		return err
	}},
}

// outcome classifies a call's error for the tables below.
func outcome(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, pgmq.ErrIncompatible):
		return "incompatible"
	case errors.Is(err, pgmq.ErrNotInstalled):
		return "not installed"
	case errors.As(err, &pgErr):
		return "SQLSTATE " + pgErr.Code + ": " + err.Error()
	}
	return "other: " + err.Error()
}

// TestOldPgmq runs every function against real old pgmq releases (their
// own install scripts, see internal/pgmqfixture). Each call either works,
// because that release has what it needs, or fails with ErrIncompatible;
// never with a bare SQLSTATE 42703 or 42883.
func TestOldPgmq(t *testing.T) {
	t.Parallel()
	// What works on each release: the calls not listed fail with
	// ErrIncompatible.
	works := map[string][]string{
		// 1.4.4: no headers, no conditional read, no timestamp delays,
		// no queue_visible_length, no last_read_at.
		"1.4.4": {"Archive", "ArchiveBatch", "Create", "CreateUnlogged", "Delete", "DeleteBatch", "DropQueue",
			"ListQueues", "PurgeQueue", "Send", "Send/Delay", "SendBatch"},
		// 1.5.1: has headers and the conditional read, but no
		// last_read_at, no pop(queue, qty), no batch set_vt, no insert
		// notifications.
		"1.5.1": {"Archive", "ArchiveBatch", "Create", "CreateUnlogged", "Delete", "DeleteBatch", "DropQueue",
			"ListQueues", "MetricsAll", "PurgeQueue", "QueueMetrics", "Send", "Send/Delay", "Send/Headers",
			"Send/VisibleAt", "SendBatch", "SendBatch/Headers"},
	}
	for _, tc := range []struct {
		version string
		mode    pgmqfixture.Mode
	}{
		{"1.4.4", pgmqfixture.Extension},
		{"1.5.1", pgmqfixture.Extension},
		{"1.5.1", pgmqfixture.PlainSQL},
	} {
		t.Run(tc.version+"-"+tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			db := pgtest.NewEmpty(t)
			pgmqfixture.Load(t, db.Pool, tc.version, tc.mode)

			want := map[string]string{}
			for _, c := range apiCalls {
				want[c.name] = "incompatible"
			}
			for _, name := range works[tc.version] {
				want[name] = "ok"
			}
			got := map[string]string{}
			for _, c := range apiCalls {
				got[c.name] = outcome(c.call(ctx, db.Pool, "jobs"))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("outcomes on pgmq %s (-want +got):\n%s", tc.version, diff)
			}
		})
	}
}

// TestIncompatibleErrorText pins what a user of pgmq 1.5.1 sees, on a pool
// (the error names the version and what is missing) and inside a
// transaction (where the call cannot look, so it points at Check), and
// what Check says.
func TestIncompatibleErrorText(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ext := pgtest.NewEmpty(t)
	pgmqfixture.Load(t, ext.Pool, "1.5.1", pgmqfixture.Extension)
	plain := pgtest.NewEmpty(t)
	pgmqfixture.Load(t, plain.Pool, "1.5.1", pgmqfixture.PlainSQL)
	for _, db := range []*pgtest.DB{ext, plain} {
		if err := pgmq.Create(ctx, db.Pool, "jobs"); err != nil {
			t.Fatal(err)
		}
	}

	const (
		extWayOut = "; update it with ALTER EXTENSION pgmq UPDATE (the server must offer 1.10 or later), or drop it" +
			" (DROP EXTENSION pgmq CASCADE, which deletes its queues and messages) and run migrations.Migrate again to install a compatible pgmq"
		missing = " (missing pgmq.message_record.last_read_at, pgmq.disable_notify_insert(text), pgmq.enable_notify_insert(text,integer), pgmq.pop(text,integer) and 3 more)"
		cause   = `: ERROR: column "last_read_at" does not exist (SQLSTATE 42703)`
	)
	_, err := pgmq.Read(ctx, ext.Pool, "jobs", time.Second, 1, nil)
	want := `pgmq: read "jobs": pgmq extension 1.5.1 is installed; runtime/pgmq needs pgmq 1.10 or later` + missing + extWayOut + cause
	if err == nil || err.Error() != want {
		t.Errorf("Read on a pool:\n got %v\nwant %s", err, want)
	}
	var ie *pgmq.IncompatibleError
	if !errors.As(err, &ie) {
		t.Fatalf("Read on a pool: %T, want *IncompatibleError", err)
	}
	wantMissing := []string{
		"pgmq.message_record.last_read_at",
		"pgmq.disable_notify_insert(text)",
		"pgmq.enable_notify_insert(text,integer)",
		"pgmq.pop(text,integer)",
		"pgmq.set_vt(text,bigint[],integer)",
		"pgmq.a_jobs.last_read_at",
		"pgmq.q_jobs.last_read_at",
	}
	if diff := cmp.Diff(wantMissing, ie.Missing); diff != "" {
		t.Errorf("Missing (-want +got):\n%s", diff)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42703" {
		t.Errorf("Read on a pool: the database error is not wrapped: %v", err)
	}

	// Inside a transaction the error has aborted it: no inspection.
	err = pgx.BeginFunc(ctx, ext.Pool, func(tx pgx.Tx) error {
		_, err := pgmq.Read(ctx, tx, "jobs", time.Second, 1, nil)
		return err
	})
	want = `pgmq: read "jobs": the installed pgmq is older than 1.10, which runtime/pgmq needs (pgmq.Check tells its version and what is missing)` + extWayOut + cause
	if err == nil || err.Error() != want || !errors.Is(err, pgmq.ErrIncompatible) {
		t.Errorf("Read in a transaction:\n got %v\nwant %s", err, want)
	}

	// Check, on the extension and on the SQL-only installation.
	err = pgmq.Check(ctx, ext.Pool)
	want = `pgmq: check: pgmq extension 1.5.1 is installed; runtime/pgmq needs pgmq 1.10 or later` + missing + extWayOut
	if err == nil || err.Error() != want || !errors.Is(err, pgmq.ErrIncompatible) {
		t.Errorf("Check on the extension:\n got %v\nwant %s", err, want)
	}
	err = pgmq.Check(ctx, plain.Pool)
	want = `pgmq: check: pgmq is installed as plain SQL with a layout older than 1.10, which runtime/pgmq needs` + missing +
		"; upgrade it to pgmq 1.10 or later with pgmq's SQL-only install scripts, or drop it" +
		" (DROP SCHEMA pgmq CASCADE, which deletes its queues and messages) and run migrations.Migrate again to install a compatible pgmq"
	if err == nil || err.Error() != want || !errors.Is(err, pgmq.ErrIncompatible) {
		t.Errorf("Check on plain SQL:\n got %v\nwant %s", err, want)
	}
}

// TestNotInstalled: on a database without pgmq, calls and Check wrap
// ErrNotInstalled and say what to do.
func TestNotInstalled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmpty(t)
	err := pgmq.Check(ctx, db.Pool)
	want := "pgmq: check: pgmq is not installed in this database: run migrations.Migrate (it installs the pgmq extension" +
		" when the server offers 1.10 or later, QuantumFlow's compatible SQL otherwise), or CREATE EXTENSION pgmq"
	if !errors.Is(err, pgmq.ErrNotInstalled) || err.Error() != want {
		t.Errorf("Check:\n got %v\nwant %s", err, want)
	}
	for _, c := range apiCalls {
		if err := c.call(ctx, db.Pool, "jobs"); !errors.Is(err, pgmq.ErrNotInstalled) {
			t.Errorf("%s: %v; want ErrNotInstalled", c.name, err)
		}
	}
}

// TestCheckCompatible: QuantumFlow's own pgmq passes Check, and every call
// works on it (so the signatures Check requires are the ones pgmq 1.10 and
// our SQL have).
func TestCheckCompatible(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if err := pgmq.Check(ctx, db.Pool); err != nil {
		t.Fatalf("Check: %v", err)
	}
	for _, c := range apiCalls {
		if err := c.call(ctx, db.Pool, "jobs"); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// countingDB counts the statements a call sends.
type countingDB struct {
	pgmq.DBTX
	n int
}

func (c *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.n++
	return c.DBTX.Exec(ctx, sql, args...)
}

func (c *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n++
	return c.DBTX.Query(ctx, sql, args...)
}

func (c *countingDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.n++
	return c.DBTX.QueryRow(ctx, sql, args...)
}

// TestCompatCostsNothingOnSuccess: a call that works sends one statement;
// only a call that fails on an old layout sends a second, to say why.
func TestCompatCostsNothingOnSuccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := pgtest.New(t)
	old := pgtest.NewEmpty(t)
	pgmqfixture.Load(t, old.Pool, "1.5.1", pgmqfixture.Extension)
	for _, db := range []*pgtest.DB{good, old} {
		if err := pgmq.Create(ctx, db.Pool, "jobs"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		db   *pgtest.DB
		want string
	}{
		{good, "ok, 1 statement(s)"},
		{old, "incompatible, 2 statement(s)"},
	} {
		c := &countingDB{DBTX: tc.db.Pool}
		_, err := pgmq.Read(ctx, c, "jobs", time.Second, 1, nil)
		if got := fmt.Sprintf("%s, %d statement(s)", outcome(err), c.n); got != tc.want {
			t.Errorf("Read: %s, want %s", got, tc.want)
		}
	}
}
