package pgmq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MinVersion is the oldest pgmq extension release this package works with.
// QuantumFlow's own pgmq SQL (migrations/0001_pgmq.sql) has its layout too.
const MinVersion = "1.10"

// ErrIncompatible is wrapped by the error of a call that failed because the
// database's pgmq is older than MinVersion, and by Check's error then. The
// error is an *IncompatibleError, which says what was found and the way out.
var ErrIncompatible = errors.New("pgmq older than " + MinVersion)

// ErrNotInstalled is wrapped by the error of a call, or of Check, on a
// database without pgmq.
var ErrNotInstalled = errors.New("pgmq is not installed")

// IncompatibleError reports a pgmq older than MinVersion: a pgmq extension
// of an older release (pgmq 1.5.1, for example, has no last_read_at) or
// pgmq's SQL-only installation of one. errors.Is(err, ErrIncompatible)
// holds for it; Unwrap returns the database error.
type IncompatibleError struct {
	// Version is the installed pgmq extension's version; "" when pgmq was
	// installed as plain SQL, or when the failing call could not look (see
	// Missing).
	Version string
	// Missing lists what pgmq 1.10's layout has and this database lacks,
	// as "pgmq.message_record.last_read_at", "pgmq.q_jobs.headers" or
	// "pgmq.pop(text,integer)". It is nil when the call that failed ran
	// inside a transaction, where looking is impossible; Check fills it in.
	Missing []string
	// Err is the database error that revealed the old layout (SQLSTATE
	// 42703 or 42883); nil for Check's error.
	Err error
}

func (e *IncompatibleError) Error() string {
	var b strings.Builder
	switch {
	case e.Version != "":
		fmt.Fprintf(&b, "pgmq extension %s is installed; runtime/pgmq needs pgmq %s or later", e.Version, MinVersion)
	case e.Missing != nil:
		fmt.Fprintf(&b, "pgmq is installed as plain SQL with a layout older than %s, which runtime/pgmq needs", MinVersion)
	default:
		fmt.Fprintf(&b, "the installed pgmq is older than %s, which runtime/pgmq needs (pgmq.Check tells its version and what is missing)", MinVersion)
	}
	if n := len(e.Missing); n > 0 {
		const show = 4
		if n <= show {
			fmt.Fprintf(&b, " (missing %s)", strings.Join(e.Missing, ", "))
		} else {
			fmt.Fprintf(&b, " (missing %s and %d more)", strings.Join(e.Missing[:show], ", "), n-show)
		}
	}
	if e.Version == "" && e.Missing != nil {
		b.WriteString("; upgrade it to pgmq " + MinVersion + " or later with pgmq's SQL-only install scripts, or drop it" +
			" (DROP SCHEMA pgmq CASCADE, which deletes its queues and messages) and run migrations.Migrate again to install a compatible pgmq")
	} else {
		b.WriteString("; update it with ALTER EXTENSION pgmq UPDATE (the server must offer " + MinVersion + " or later), or drop it" +
			" (DROP EXTENSION pgmq CASCADE, which deletes its queues and messages) and run migrations.Migrate again to install a compatible pgmq")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Is reports whether target is ErrIncompatible.
func (e *IncompatibleError) Is(target error) bool { return target == ErrIncompatible }

// Unwrap returns the database error, nil for Check's error.
func (e *IncompatibleError) Unwrap() error { return e.Err }

// notInstalled is the error of a call or Check on a database without pgmq;
// cause (the database error) may be nil.
func notInstalled(cause error) error {
	const way = "run migrations.Migrate (it installs the pgmq extension when the server offers " + MinVersion +
		" or later, QuantumFlow's compatible SQL otherwise), or CREATE EXTENSION pgmq"
	if cause == nil {
		return fmt.Errorf("%w in this database: %s", ErrNotInstalled, way)
	}
	return fmt.Errorf("%w in this database: %s: %w", ErrNotInstalled, way, cause)
}

// requiredColumns are the composite-type columns, and queueColumns the queue
// and archive table columns, of pgmq 1.10's layout that older releases
// lack or that this client reads.
var (
	requiredColumns = [][2]string{
		{"pgmq.message_record", "msg_id"},
		{"pgmq.message_record", "read_ct"},
		{"pgmq.message_record", "enqueued_at"},
		{"pgmq.message_record", "last_read_at"},
		{"pgmq.message_record", "vt"},
		{"pgmq.message_record", "message"},
		{"pgmq.message_record", "headers"},
		{"pgmq.metrics_result", "queue_visible_length"},
	}
	queueColumns = []string{"last_read_at", "headers"}
)

// requiredFunctions are the signatures this package calls, as pgmq 1.10
// defines them (to_regprocedure syntax).
var requiredFunctions = []string{
	"pgmq.archive(text,bigint)",
	"pgmq.archive(text,bigint[])",
	"pgmq.create(text)",
	"pgmq.create_non_partitioned(text)",
	"pgmq.create_partitioned(text,text,text)",
	"pgmq.create_unlogged(text)",
	"pgmq.delete(text,bigint)",
	"pgmq.delete(text,bigint[])",
	"pgmq.disable_notify_insert(text)",
	"pgmq.drop_queue(text)",
	"pgmq.enable_notify_insert(text,integer)",
	"pgmq.list_queues()",
	"pgmq.metrics(text)",
	"pgmq.metrics_all()",
	"pgmq.pop(text,integer)",
	"pgmq.purge_queue(text)",
	"pgmq.read(text,integer,integer,jsonb)",
	"pgmq.read_with_poll(text,integer,integer,integer,integer,jsonb)",
	"pgmq.send(text,jsonb)",
	"pgmq.send(text,jsonb,integer)",
	"pgmq.send(text,jsonb,timestamp with time zone)",
	"pgmq.send(text,jsonb,jsonb)",
	"pgmq.send(text,jsonb,jsonb,integer)",
	"pgmq.send(text,jsonb,jsonb,timestamp with time zone)",
	"pgmq.send_batch(text,jsonb[])",
	"pgmq.send_batch(text,jsonb[],integer)",
	"pgmq.send_batch(text,jsonb[],timestamp with time zone)",
	"pgmq.send_batch(text,jsonb[],jsonb[])",
	"pgmq.send_batch(text,jsonb[],jsonb[],integer)",
	"pgmq.send_batch(text,jsonb[],jsonb[],timestamp with time zone)",
	"pgmq.set_vt(text,bigint,integer)",
	"pgmq.set_vt(text,bigint[],integer)",
}

// inspectSQL reads, in one statement, the installed extension's version,
// whether any pgmq is installed, and what of the 1.10 layout is missing:
// record columns ($1 types, $2 columns), functions ($3) and queue or archive
// table columns ($4), in that order.
const inspectSQL = `
SELECT coalesce((SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgmq'), ''),
       to_regclass('pgmq.meta') IS NOT NULL,
       ARRAY(
           SELECT item FROM (
               SELECT 1 AS part, r.ord, r.typ || '.' || r.col AS item
               FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(typ, col, ord)
               WHERE NOT EXISTS (
                   SELECT 1 FROM pg_catalog.pg_type t
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid
                   WHERE t.oid = to_regtype(r.typ) AND a.attname = r.col AND NOT a.attisdropped)
               UNION ALL
               SELECT 2, f.ord, f.sig
               FROM unnest($3::text[]) WITH ORDINALITY AS f(sig, ord)
               WHERE to_regprocedure(f.sig) IS NULL
               UNION ALL
               SELECT 3, 0, format('pgmq.%I.%I', c.relname, q.col)
               FROM pg_catalog.pg_class c CROSS JOIN unnest($4::text[]) AS q(col)
               WHERE c.relnamespace = to_regnamespace('pgmq') AND c.relkind IN ('r', 'p')
                 AND (c.relname LIKE 'q\_%' OR c.relname LIKE 'a\_%')
                 AND NOT EXISTS (
                     SELECT 1 FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attname = q.col AND NOT a.attisdropped)
           ) missing
           ORDER BY part, ord, item)`

// layout is what inspect found.
type layout struct {
	version   string   // the extension's version, "" if not an extension
	installed bool     // pgmq.meta exists
	missing   []string // what pgmq 1.10 has and this database lacks
}

func inspect(ctx context.Context, db DBTX) (layout, error) {
	types := make([]string, len(requiredColumns))
	cols := make([]string, len(requiredColumns))
	for i, c := range requiredColumns {
		types[i], cols[i] = c[0], c[1]
	}
	var l layout
	err := db.QueryRow(ctx, inspectSQL, types, cols, requiredFunctions, queueColumns).Scan(&l.version, &l.installed, &l.missing)
	return l, err
}

// Check reports, in one query, whether the database's pgmq is one this
// package works with: nil for pgmq 1.10 or later and for QuantumFlow's own
// pgmq SQL; an error wrapping ErrNotInstalled when there is no pgmq; an
// *IncompatibleError (wrapping ErrIncompatible) that names the version, what
// is missing and the way out when it is older. Calls on an old pgmq fail
// with the same error anyway, so Check is only needed to fail fast, for
// example at startup or in a health check.
func Check(ctx context.Context, db DBTX) error {
	l, err := inspect(ctx, db)
	if err != nil {
		return fmt.Errorf("pgmq: check: %w", err)
	}
	switch {
	case !l.installed && l.version == "":
		return fmt.Errorf("pgmq: check: %w", notInstalled(nil))
	case len(l.missing) > 0:
		return fmt.Errorf("pgmq: check: %w", &IncompatibleError{Version: l.version, Missing: l.missing})
	}
	return nil
}

// diagnose turns the error of a call that referred to a column or function
// the database's pgmq does not have (SQLSTATE 42703 or 42883) into an
// *IncompatibleError. It costs nothing on calls that succeed: only after
// such an error does it inspect the database, in one query, when db can
// still run one (not inside a transaction, which the error has aborted),
// to name the version and what is missing. If the inspection finds the
// 1.10 layout complete, the error has another cause and is returned as is.
func diagnose(ctx context.Context, db DBTX, cause error) error {
	if !canQuery(db) || ctx.Err() != nil {
		return &IncompatibleError{Err: cause}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := inspect(ctx, db)
	switch {
	case err != nil:
		return &IncompatibleError{Err: cause}
	case !l.installed && l.version == "":
		return notInstalled(cause)
	case len(l.missing) == 0:
		return cause
	}
	return &IncompatibleError{Version: l.version, Missing: l.missing, Err: cause}
}

// canQuery reports whether db can run another statement after an error: a
// pool can; a connection (a *pgx.Conn, a *pgxpool.Conn, or a pgx.Tx, which
// all have Conn) only when it is not inside a transaction.
func canQuery(db DBTX) bool {
	var pc *pgconn.PgConn
	switch c := db.(type) {
	case interface{ PgConn() *pgconn.PgConn }: // *pgx.Conn
		pc = c.PgConn()
	case interface{ Conn() *pgx.Conn }: // pgx.Tx, *pgxpool.Conn
		if conn := c.Conn(); conn != nil {
			pc = conn.PgConn()
		}
	default: // a pool, or a type of the caller's
		return true
	}
	return pc != nil && pc.TxStatus() == 'I'
}
