package migrations_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/quantumflow/qflow/internal/pgmqfixture"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/migrations"
	"github.com/quantumflow/qflow/runtime/pgmq"
)

// oldPgmqCases are the installations of an old pgmq the tests reproduce.
var oldPgmqCases = []struct {
	version string
	mode    pgmqfixture.Mode
}{
	{"1.4.4", pgmqfixture.Extension},
	{"1.5.1", pgmqfixture.Extension},
	{"1.5.1", pgmqfixture.PlainSQL},
}

// pgmqFacts is what the tests look at: the extension's version ("" when
// none), whether message_record has last_read_at (the 1.10 layout), and
// whether our 0001 SQL is there (pgmq._queue_table exists only in ours).
func pgmqFacts(t *testing.T, ctx context.Context, db *pgtest.DB) (ext string, lastReadAt, ours bool) {
	t.Helper()
	err := db.Pool.QueryRow(ctx, `
		SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'pgmq'), ''),
		       EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pgmq.message_record'::regclass AND attname = 'last_read_at'),
		       to_regprocedure('pgmq._queue_table(text,text)') IS NOT NULL`).Scan(&ext, &lastReadAt, &ours)
	if err != nil {
		t.Fatal(err)
	}
	return ext, lastReadAt, ours
}

// TestMigrateLeavesOldPgmqAlone: on a database where a pgmq older than 1.10
// is installed, Migrate succeeds (the engine does not need pgmq), changes
// nothing of that pgmq, and records 0001; pgmq.Check and the pgmq API then
// report the incompatibility with the way out instead of SQLSTATE 42703.
func TestMigrateLeavesOldPgmqAlone(t *testing.T) {
	t.Parallel()
	for _, tc := range oldPgmqCases {
		t.Run(tc.version+"-"+tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			db := pgtest.NewEmpty(t)
			pgmqfixture.Load(t, db.Pool, tc.version, tc.mode)
			// A queue an existing application made with its pgmq.
			if _, err := db.Pool.Exec(ctx, `SELECT pgmq.create('legacy')`); err != nil {
				t.Fatal(err)
			}

			for i := 0; i < 2; i++ { // the second run is a no-op
				if err := migrations.Migrate(ctx, db.Pool); err != nil {
					t.Fatalf("Migrate %d: %v", i+1, err)
				}
			}
			if v, err := migrations.Version(ctx, db.Pool); err != nil || v != migrations.Latest() {
				t.Fatalf("version %d, %v; want %d", v, err, migrations.Latest())
			}
			ext, lastReadAt, ours := pgmqFacts(t, ctx, db)
			wantExt := ""
			if tc.mode == pgmqfixture.Extension {
				wantExt = tc.version
			}
			if ext != wantExt || lastReadAt || ours {
				t.Fatalf("after Migrate: extension %q, last_read_at %t, our SQL %t; want %q, false, false (left alone)", ext, lastReadAt, ours, wantExt)
			}
			var queues int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pgmq.meta WHERE queue_name = 'legacy'`).Scan(&queues); err != nil || queues != 1 {
				t.Fatalf("the existing queue: %d rows, %v; want it kept", queues, err)
			}

			err := pgmq.Check(ctx, db.Pool)
			var ie *pgmq.IncompatibleError
			if !errors.Is(err, pgmq.ErrIncompatible) || !errors.As(err, &ie) || ie.Version != wantExt || len(ie.Missing) == 0 {
				t.Fatalf("pgmq.Check: %v; want an *IncompatibleError for version %q", err, wantExt)
			}
			_, err = pgmq.Read(ctx, db.Pool, "legacy", time.Second, 1, nil)
			if !errors.Is(err, pgmq.ErrIncompatible) {
				t.Fatalf("pgmq.Read: %v; want ErrIncompatible", err)
			}
		})
	}
}

// TestMigrateReinstallsDroppedPgmq follows the documented way out of an old
// pgmq: drop it, run Migrate again. Migrate then installs a compatible pgmq
// (here our SQL: the test server offers no pgmq extension) and the pgmq
// API works.
func TestMigrateReinstallsDroppedPgmq(t *testing.T) {
	t.Parallel()
	for _, tc := range oldPgmqCases {
		t.Run(tc.version+"-"+tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			db := pgtest.NewEmpty(t)
			pgmqfixture.Load(t, db.Pool, tc.version, tc.mode)
			if err := migrations.Migrate(ctx, db.Pool); err != nil {
				t.Fatal(err)
			}
			drop := `DROP SCHEMA pgmq CASCADE`
			if tc.mode == pgmqfixture.Extension {
				drop = `DROP EXTENSION pgmq CASCADE`
			}
			if _, err := db.Pool.Exec(ctx, drop); err != nil {
				t.Fatalf("%s: %v", drop, err)
			}
			if err := pgmq.Check(ctx, db.Pool); !errors.Is(err, pgmq.ErrNotInstalled) {
				t.Fatalf("pgmq.Check after %s: %v; want ErrNotInstalled", drop, err)
			}
			if err := migrations.Migrate(ctx, db.Pool); err != nil {
				t.Fatalf("Migrate after %s: %v", drop, err)
			}
			if ext, lastReadAt, ours := pgmqFacts(t, ctx, db); ext != "" || !lastReadAt || !ours {
				t.Fatalf("after Migrate: extension %q, last_read_at %t, our SQL %t; want our SQL", ext, lastReadAt, ours)
			}
			if err := pgmq.Check(ctx, db.Pool); err != nil {
				t.Fatalf("pgmq.Check: %v", err)
			}
			if err := pgmq.Create(ctx, db.Pool, "jobs"); err != nil {
				t.Fatal(err)
			}
			if _, err := pgmq.Send(ctx, db.Pool, "jobs", json.RawMessage(`{"n":1}`), &pgmq.SendOpts{Headers: json.RawMessage(`{"h":1}`)}); err != nil {
				t.Fatal(err)
			}
			msgs, err := pgmq.Read(ctx, db.Pool, "jobs", time.Minute, 1, nil)
			if err != nil || len(msgs) != 1 || msgs[0].LastReadAt == nil {
				t.Fatalf("Read: %+v, %v; want one message with LastReadAt", msgs, err)
			}
		})
	}
}

// TestMigrateInstallsOursWithoutExtension: on a server that offers no pgmq
// extension (the test server), Migrate installs our SQL, which passes
// pgmq.Check.
func TestMigrateInstallsOursWithoutExtension(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmpty(t)
	var offered bool
	if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgmq')`).Scan(&offered); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Migrate(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	ext, lastReadAt, ours := pgmqFacts(t, ctx, db)
	if !lastReadAt {
		t.Fatalf("after Migrate: pgmq.message_record has no last_read_at (extension %q)", ext)
	}
	if !offered && (ext != "" || !ours) {
		t.Fatalf("server offers no pgmq: extension %q, our SQL %t; want our SQL", ext, ours)
	}
	if err := pgmq.Check(ctx, db.Pool); err != nil {
		t.Fatalf("pgmq.Check: %v", err)
	}
}

// TestMigrateUpgradesOurEarlierPgmq: a database that an earlier revision of
// 0001_pgmq.sql installed (revision 1: no pgmq._qflow_revision, names
// limited to letters, digits and underscores) is upgraded in place by
// Migrate, keeping its queues and messages; the current revision is left
// alone.
func TestMigrateUpgradesOurEarlierPgmq(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(ctx, `SELECT pgmq.create('kept'); SELECT pgmq.send('kept', '1')`); err != nil {
		t.Fatal(err)
	}
	// Revision 1's name rule, and no revision function.
	if _, err := db.Pool.Exec(ctx, `
		DROP FUNCTION pgmq._qflow_revision();
		CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text) RETURNS text
		LANGUAGE plpgsql IMMUTABLE AS $$
		BEGIN
			IF queue_name !~ '^[A-Za-z0-9_]+$' THEN
				RAISE EXCEPTION 'invalid queue name' USING ERRCODE = 'invalid_parameter_value';
			END IF;
			RETURN lower(prefix || '_' || queue_name);
		END $$`); err != nil {
		t.Fatal(err)
	}
	if err := pgmq.Create(ctx, db.Pool, "queue-hyphened"); err == nil {
		t.Fatal("revision 1 accepted a hyphen: the simulation is wrong")
	}
	if err := migrations.Migrate(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if err := pgmq.Create(ctx, db.Pool, "queue-hyphened"); err != nil {
		t.Errorf("after Migrate: %v", err)
	}
	if m, err := pgmq.QueueMetrics(ctx, db.Pool, "kept"); err != nil || m.QueueLength != 1 {
		t.Errorf("queue kept: %+v, %v", m, err)
	}
	var rev int
	if err := db.Pool.QueryRow(ctx, `SELECT pgmq._qflow_revision()`).Scan(&rev); err != nil || rev != 2 {
		t.Errorf("revision %d, %v; want 2", rev, err)
	}
	// The current revision is not run again: a change to a function survives.
	if _, err := db.Pool.Exec(ctx, `CREATE OR REPLACE FUNCTION pgmq.list_queues() RETURNS SETOF pgmq.queue_record
		LANGUAGE sql AS $$ SELECT * FROM pgmq.meta /* mine */ $$`); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Migrate(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	var mine bool
	if err := db.Pool.QueryRow(ctx, `SELECT prosrc LIKE '%mine%' FROM pg_proc WHERE oid = 'pgmq.list_queues()'::regprocedure`).Scan(&mine); err != nil || !mine {
		t.Errorf("Migrate re-ran the current revision (%v)", err)
	}
}
