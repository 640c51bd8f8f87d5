// Package pgmqfixture reproduces, in a test database, a pgmq older than
// 1.10 installed the way a user would have it: pgmq's own install scripts
// of releases 1.4.4 and 1.5.1 (embedded here, unmodified, with pgmq's
// licence), loaded either as the extension or as pgmq's SQL-only
// installation.
//
// The test server does not ship pgmq's extension files, so Extension mode
// does what CREATE EXTENSION pgmq VERSION '1.5.1' would leave behind: the
// pgmq schema, a pg_extension row with that version (inserted directly
// into the catalog, which needs a superuser; the database is a throwaway),
// the script's objects, and every object made a member of the extension,
// so that pgmq's own functions and DROP EXTENSION pgmq CASCADE behave as
// on a real installation.
//
// Only tests import this package.
package pgmqfixture

import (
	"context"
	"embed"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed pgmq-*.sql
var scripts embed.FS

// Versions are the pgmq releases this package can load, oldest first.
// 1.4.4 has neither message headers nor read's conditional argument; 1.5.1
// (the version of the report in issue 11) has both, but no last_read_at,
// no pop(queue, qty), no batch set_vt and no insert notifications.
var Versions = []string{"1.4.4", "1.5.1"}

// Mode is how the old pgmq is installed.
type Mode int

const (
	// Extension registers pgmq as an installed extension of the version
	// loaded (pg_extension.extversion), owning every object.
	Extension Mode = iota
	// PlainSQL is pgmq's SQL-only installation (for servers without the
	// extension files): the same objects, no extension. pgmq supports it
	// from 1.5.0; 1.4.4's script needs the extension.
	PlainSQL
)

func (m Mode) String() string {
	if m == PlainSQL {
		return "plain-sql"
	}
	return "extension"
}

// registerExtension inserts the catalog row CREATE EXTENSION would have
// made ($1 is the version).
const registerExtension = `
INSERT INTO pg_catalog.pg_extension (oid, extname, extowner, extnamespace, extrelocatable, extversion)
SELECT greatest(coalesce(max(e.oid::int8), 0) + 1, 1000000)::oid, 'pgmq',
       (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user),
       'pgmq'::regnamespace, false, $1::text
FROM pg_catalog.pg_extension e`

// addMembers makes every function, standalone composite type, table and
// sequence in schema pgmq a member of extension pgmq, as the objects an
// extension script creates are.
const addMembers = `
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT 'FUNCTION' AS kind, p.oid::regprocedure::text AS name
        FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'pgmq'::regnamespace
        UNION ALL
        SELECT 'TYPE', t.oid::regtype::text
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
        WHERE t.typnamespace = 'pgmq'::regnamespace AND c.relkind = 'c'
        UNION ALL
        SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass::text
        FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relkind IN ('r', 'p', 'S')
    LOOP
        EXECUTE format('ALTER EXTENSION pgmq ADD %s %s', r.kind, r.name);
    END LOOP;
END
$$`

// Load installs pgmq version (one of Versions) into the database of pool,
// in mode, in one transaction, and fails the test if it cannot.
func Load(t testing.TB, pool *pgxpool.Pool, version string, mode Mode) {
	t.Helper()
	script, err := scripts.ReadFile("pgmq-" + version + ".sql")
	if err != nil {
		t.Fatalf("pgmqfixture: no pgmq %s script (have %v)", version, Versions)
	}
	if mode == PlainSQL && version == "1.4.4" {
		t.Fatalf("pgmqfixture: pgmq %s has no SQL-only installation", version)
	}
	ctx := context.Background()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA pgmq`); err != nil {
			return err
		}
		if mode == Extension {
			if _, err := tx.Exec(ctx, registerExtension, version); err != nil {
				return fmt.Errorf("register the extension (needs a superuser): %w", err)
			}
		}
		if _, err := tx.Exec(ctx, string(script)); err != nil {
			return fmt.Errorf("run pgmq-%s.sql: %w", version, err)
		}
		if mode == Extension {
			if _, err := tx.Exec(ctx, addMembers); err != nil {
				return fmt.Errorf("add members: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pgmqfixture: load pgmq %s as %s: %v", version, mode, err)
	}
}
