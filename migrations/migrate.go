package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed *.sql
var files embed.FS

// lockKey is the advisory lock that serialises concurrent migrators
// (the bytes of "qflowmig" as a big-endian int64).
const lockKey int64 = 0x71666c6f776d6967

// ErrNewerSchema is returned when the database was migrated by a newer
// release of QuantumFlow than the running one.
var ErrNewerSchema = errors.New("qflow: database schema is newer than this build")

// ErrStaleSchema is returned by Migrate for a database that an earlier
// pre-release build migrated: its engine tables have an older layout under
// the same migration numbers, and its runs cannot be carried over.
var ErrStaleSchema = errors.New("qflow: database holds the engine schema of an earlier pre-release build")

// Stale reports whether db holds a pre-release engine schema (see
// ErrStaleSchema): migration 0002 recorded as applied, but qflow.step_tasks
// or qflow.runs without the columns the current engine has (the newest:
// step_tasks.lane, by which claims find the tasks each limit holds, and
// steps.absent_ok, with the conditional and optional steps skip_steps
// handles; before them runs.priority, with which define_flow stores step
// priorities and start_steps adds a run's priority to its tasks'), or a
// qflow.define_flow that still takes the definition without its normalised
// steps (and read durations as nanoseconds), or the start_steps (the newest
// creates a starting worker's first tasks claimed) and settle
// of an earlier build of this one (the newest settle takes results of
// tasks run inline and snoozes, and records inline successes directly
// through record_inline), or a finish_tasks that records no step statistics
// (or their migration 0004 applied without the table it appends to), or a
// start_steps that does not hold the steps waiting for a signal (migration
// 0006).
func Stale(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (bool, error) {
	var applied, current bool
	err := db.QueryRow(ctx, `SELECT
		to_regclass('qflow.schema_migrations') IS NOT NULL
		  AND EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		              WHERE n.nspname = 'qflow' AND c.relname = 'step_states'),
		(SELECT count(*) = 7 FROM information_schema.columns
		 WHERE table_schema = 'qflow' AND ((table_name = 'step_tasks' AND column_name IN ('seq', 'lane'))
		                                   OR (table_name = 'runs' AND column_name IN ('trace_context', 'idempotency_key', 'resumes', 'priority'))
		                                   OR (table_name = 'steps' AND column_name = 'absent_ok')))
		  AND to_regprocedure('qflow.define_flow(text, text, jsonb, jsonb)') IS NOT NULL
		  AND to_regprocedure('qflow.start_steps(uuid[], smallint[], uuid, integer, bigint, boolean)') IS NOT NULL
		  AND to_regprocedure('qflow.settle(uuid, uuid[], smallint[], integer[], jsonb[], uuid[], smallint[], integer[], text[], boolean[], bigint[], uuid[], smallint[], integer[], jsonb[], text[], boolean[], bigint[], integer, integer, bigint)') IS NOT NULL
		  AND to_regprocedure('qflow.record_inline(uuid, timestamptz, uuid[], smallint[], integer[], jsonb[], uuid[], uuid[], smallint[], integer[], jsonb[], text[])') IS NOT NULL
		  AND EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		              WHERE n.nspname = 'qflow' AND p.proname = 'finish_tasks' AND p.prosrc LIKE '%qflow.record_completions(%')
		  AND EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		              WHERE n.nspname = 'qflow' AND p.proname = 'start_steps' AND p.prosrc LIKE '%qflow.hold_waits(%')
		  AND (to_regclass('qflow.step_stats') IS NULL OR to_regclass('qflow.step_stats_pending') IS NOT NULL)`).Scan(&applied, &current)
	if err != nil {
		return false, err
	}
	return applied && !current, nil
}

// Migration is one embedded, versioned schema change.
type Migration struct {
	Version int    // from the file name's numeric prefix
	Name    string // the file name without prefix and extension
	SQL     string // the file's contents
}

// All returns the embedded migrations in version order.
func All() []Migration {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic(err) // embedded: cannot fail
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		prefix, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil {
			panic(fmt.Sprintf("migrations: file %q must be named NNNN_name.sql", name))
		}
		b, _ := files.ReadFile(name)
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(rest, ".sql"), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// Latest returns the highest embedded migration version.
func Latest() int {
	all := All()
	return all[len(all)-1].Version
}

// Migrate brings the database up to date in one transaction. It is safe to
// call from several processes at once (an advisory lock serialises them), a
// no-op when the schema is current, and fails with ErrNewerSchema when the
// database was migrated by a newer release.
//
// For pgmq it installs the extension when the server offers 1.10 or later,
// and QuantumFlow's compatible SQL otherwise; it leaves an installed pgmq
// of any version alone, and installs one again if the pgmq it found or
// installed was dropped. The package documentation has the details.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return MigrateTx(ctx, tx) })
}

// MigrateTx is Migrate inside the caller's transaction: nothing is applied
// unless the caller commits.
func MigrateTx(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::bigint)`, lockKey); err != nil {
		return fmt.Errorf("qflow migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		CREATE SCHEMA IF NOT EXISTS qflow;
		CREATE TABLE IF NOT EXISTS qflow.schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
		return fmt.Errorf("qflow migrate: bootstrap: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM qflow.schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("qflow migrate: read version: %w", err)
	}
	if latest := Latest(); current > latest {
		return fmt.Errorf("%w: database is at version %d, this build knows up to %d; upgrade QuantumFlow", ErrNewerSchema, current, latest)
	}
	if stale, err := Stale(ctx, tx); err != nil {
		return fmt.Errorf("qflow migrate: %w", err)
	} else if stale {
		return fmt.Errorf("%w; its runs cannot be carried over: "+
			"drop the qflow schema (DROP SCHEMA qflow CASCADE) or use a new database, then migrate again", ErrStaleSchema)
	}
	for _, m := range All() {
		if m.Version <= current {
			continue
		}
		if err := apply(ctx, tx, m); err != nil {
			return fmt.Errorf("qflow migrate: %04d_%s: %w", m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO qflow.schema_migrations (version, name) VALUES ($1::int, $2::text)`, m.Version, m.Name); err != nil {
			return fmt.Errorf("qflow migrate: record %d: %w", m.Version, err)
		}
	}
	if err := ensurePgmq(ctx, tx); err != nil {
		return fmt.Errorf("qflow migrate: reinstall pgmq: %w", err)
	}
	return nil
}

// apply runs one migration. The pgmq migration installs the real extension
// (1.10 or later) instead of our implementation when the server offers it,
// and leaves an installed pgmq alone (see applyPgmq).
func apply(ctx context.Context, tx pgx.Tx, m Migration) error {
	if m.Name == "pgmq" {
		return applyPgmq(ctx, tx, m)
	}
	_, err := tx.Exec(ctx, m.SQL)
	return err
}

// Version reports the schema version a database is at (0 when unmigrated).
func Version(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('qflow.schema_migrations') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int
	err := db.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM qflow.schema_migrations`).Scan(&v)
	return v, err
}
