package migrations

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Which pgmq a database gets. Migration 0001 provides pgmq's SQL API for
// runtime/pgmq and notify.SendWithNotify; the engine keeps its tasks in its
// own tables and works whatever pgmq is installed. The policy, in order:
//
//  1. A pgmq is already installed (the extension at any version, pgmq's
//     SQL-only installation, or ours): leave it alone. Migrate never
//     upgrades, downgrades or drops a user's pgmq; other applications may
//     depend on it. If it is older than 1.10, runtime/pgmq's calls that
//     need the newer layout fail with pgmq.ErrIncompatible, which names the
//     version and the way out.
//  2. The server offers the extension at MinPgmqVersion or later: create it
//     (its default version, or else the newest offered version that is
//     recent enough).
//  3. Otherwise (not offered, or only older versions): run 0001_pgmq.sql,
//     our pgmq 1.10-compatible SQL.
//
// QuantumFlow's own SQL is the one pgmq Migrate does change: when a database
// holds an earlier revision of it, Migrate runs 0001_pgmq.sql again (it is
// idempotent), which brings the functions up to date and keeps the queues.
//
// The plan is loaded, decided and applied in separate steps so the decision
// is a pure function with its own tests.

// MinPgmqVersion is the oldest pgmq extension version Migrate installs:
// runtime/pgmq relies on the layout pgmq 1.10 has (last_read_at and headers
// on every message, read's conditional, batch set_vt, pop with a quantity,
// insert notifications).
const MinPgmqVersion = "1.10"

// pgmqState is what the database and the server say about pgmq.
type pgmqState struct {
	Installed string   // extversion of the installed pgmq extension; "" when none
	Present   bool     // some pgmq is installed: the extension, or a pgmq.meta table
	Default   string   // default_version of the extension the server offers; "" when none
	Offered   []string // every version of the extension the server can install
}

type pgmqAction int

const (
	pgmqKeep      pgmqAction = iota // a pgmq is installed: leave it alone
	pgmqExtension                   // CREATE EXTENSION pgmq VERSION plan.Version
	pgmqOurs                        // run 0001_pgmq.sql
)

// pgmqPlan is what applyPgmq does.
type pgmqPlan struct {
	Action  pgmqAction
	Version string // the extension version to create, for pgmqExtension
}

const loadPgmqStateSQL = `
SELECT coalesce((SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgmq'), ''),
       to_regclass('pgmq.meta') IS NOT NULL
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgmq'),
       coalesce((SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'pgmq'), ''),
       ARRAY(SELECT version FROM pg_catalog.pg_available_extension_versions WHERE name = 'pgmq')`

func loadPgmqState(ctx context.Context, tx pgx.Tx) (pgmqState, error) {
	var s pgmqState
	err := tx.QueryRow(ctx, loadPgmqStateSQL).Scan(&s.Installed, &s.Present, &s.Default, &s.Offered)
	return s, err
}

// planPgmq decides what to do about pgmq (see the policy above).
func planPgmq(s pgmqState) pgmqPlan {
	if s.Present || s.Installed != "" {
		return pgmqPlan{Action: pgmqKeep}
	}
	if pgmqVersionOK(s.Default) {
		return pgmqPlan{Action: pgmqExtension, Version: s.Default}
	}
	best := ""
	for _, v := range s.Offered {
		if pgmqVersionOK(v) && (best == "" || compareVersions(v, best) > 0) {
			best = v
		}
	}
	if best != "" {
		return pgmqPlan{Action: pgmqExtension, Version: best}
	}
	return pgmqPlan{Action: pgmqOurs}
}

// applyPgmq applies migration m (0001_pgmq) according to planPgmq.
func applyPgmq(ctx context.Context, tx pgx.Tx, m Migration) error {
	s, err := loadPgmqState(ctx, tx)
	if err != nil {
		return fmt.Errorf("inspect pgmq: %w", err)
	}
	switch p := planPgmq(s); p.Action {
	case pgmqKeep:
		return nil
	case pgmqExtension:
		// The version comes from the server's catalog and passed
		// parseVersion (digits and dots only), so it is safe to quote.
		_, err := tx.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pgmq VERSION '`+p.Version+`'`)
		return err
	default:
		_, err := tx.Exec(ctx, m.SQL)
		return err
	}
}

// ourPgmqRevision is the revision of 0001_pgmq.sql this build embeds, as
// its pgmq._qflow_revision() returns it. Revision 1 (before pgmq's naming
// rules, partitioned queues and the grouped reads) had no such function.
const ourPgmqRevision = 2

// ensurePgmq reinstalls pgmq (by the same policy) when an earlier Migrate
// applied 0001 and the pgmq it installed or found is gone, for example
// after DROP EXTENSION pgmq CASCADE, the documented way out of an
// incompatible pgmq. When the pgmq present is QuantumFlow's own SQL of an
// earlier revision, it runs 0001_pgmq.sql again, which upgrades the
// functions in place and keeps every queue and message. Any other pgmq is
// left alone.
func ensurePgmq(ctx context.Context, tx pgx.Tx) error {
	var present, ours, revised bool
	if err := tx.QueryRow(ctx, `
		SELECT to_regclass('pgmq.meta') IS NOT NULL
		    OR EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgmq'),
		       to_regprocedure('pgmq._queue_table(text,text)') IS NOT NULL
		   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgmq'),
		       to_regprocedure('pgmq._qflow_revision()') IS NOT NULL`).Scan(&present, &ours, &revised); err != nil {
		return fmt.Errorf("inspect pgmq: %w", err)
	}
	m, ok := pgmqMigration()
	if !ok {
		return nil
	}
	if !present {
		return applyPgmq(ctx, tx, m)
	}
	if !ours {
		return nil
	}
	rev := 1
	if revised {
		if err := tx.QueryRow(ctx, `SELECT pgmq._qflow_revision()`).Scan(&rev); err != nil {
			return fmt.Errorf("inspect pgmq: %w", err)
		}
	}
	if rev >= ourPgmqRevision {
		return nil
	}
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return fmt.Errorf("upgrade QuantumFlow's pgmq from revision %d: %w", rev, err)
	}
	return nil
}

func pgmqMigration() (Migration, bool) {
	for _, m := range All() {
		if m.Name == "pgmq" {
			return m, true
		}
	}
	return Migration{}, false
}

// pgmqVersionOK reports whether v is a pgmq extension version Migrate
// installs (MinPgmqVersion or later). An unparsable version is not.
func pgmqVersionOK(v string) bool {
	if _, ok := parseVersion(v); !ok {
		return false
	}
	return compareVersions(v, MinPgmqVersion) >= 0
}

// parseVersion parses an extension version made of dot-separated decimal
// numbers ("1.10.0").
func parseVersion(v string) ([]int, bool) {
	if v == "" {
		return nil, false
	}
	parts := strings.Split(v, ".")
	out := make([]int, len(parts))
	for i, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return nil, false
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// compareVersions compares two versions that parseVersion accepts
// component by component, a missing component counting as 0 ("1.10" ==
// "1.10.0" < "1.10.1" < "1.11").
func compareVersions(a, b string) int {
	x, _ := parseVersion(a)
	y, _ := parseVersion(b)
	for i := 0; i < len(x) || i < len(y); i++ {
		var p, q int
		if i < len(x) {
			p = x[i]
		}
		if i < len(y) {
			q = y[i]
		}
		if p != q {
			if p < q {
				return -1
			}
			return 1
		}
	}
	return 0
}
