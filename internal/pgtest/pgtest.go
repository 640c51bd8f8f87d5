// Package pgtest gives each test an isolated PostgreSQL database on a real
// server, found by localpg.Find: the one named by DATABASE_URL; else the
// local server at 127.0.0.1:5432 (QFLOW_PGPORT changes the port) as the
// current user, root or postgres with trust authentication; else a
// throwaway cluster started from the locally installed PostgreSQL binaries.
//
// The throwaway cluster is started once per test process, on first use, and
// lives as long as the process: its watchdog stops it and removes its
// directory when the process exits, however it exits, so packages need no
// TestMain. When no server answers and no binaries are installed, tests
// fail with a message saying what to install or set; they never pass
// silently.
//
// Migrated databases are cloned from a template database that is built once
// per schema revision (its name carries a hash of the embedded migrations),
// so a new database costs one CREATE DATABASE ... TEMPLATE. When the test
// ends, a migrated database is checked with qflow.invariant_violations
// before it is dropped: a row of runs, step_states or step_tasks that
// breaks the engine's rules fails the test.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/localpg"
	"github.com/quantumflow/qflow/migrations"
)

// DB is an isolated database that is dropped when the test ends.
type DB struct {
	Name string        // database name
	URL  string        // connection string for this database
	Pool *pgxpool.Pool // pool on this database, closed at cleanup
}

var (
	adminOnce sync.Once
	adminURL  string
	adminErr  error
	cluster   *localpg.Cluster // the throwaway cluster, if one was started
)

// AdminURL returns a working connection string for the server (the
// maintenance database), failing the test with instructions when there is
// none. The first call may start a throwaway cluster (see the package
// documentation).
func AdminURL(t testing.TB) string {
	t.Helper()
	adminOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		adminURL, cluster, adminErr = localpg.Find(ctx)
		if adminErr != nil {
			adminErr = fmt.Errorf("pgtest: no PostgreSQL for tests: %w", adminErr)
			return
		}
		if cluster != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %s; using a throwaway cluster in %s (removed when this process exits)\n",
				cluster.Reason, cluster.Dir())
		}
	})
	if adminErr != nil {
		t.Fatal(adminErr)
	}
	return adminURL
}

// New returns a fresh, migrated database for this test.
func New(t testing.TB) *DB {
	t.Helper()
	return create(t, templateName(t), true)
}

// NewEmpty returns a fresh database with nothing migrated.
func NewEmpty(t testing.TB) *DB {
	t.Helper()
	return create(t, "template0", false)
}

func create(t testing.TB, template string, check bool) *DB {
	t.Helper()
	admin := AdminURL(t)
	name := fmt.Sprintf("qflowtest_%d_%08x", os.Getpid(), rand.Uint32())
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, pgx.Identifier{name}.Sanitize(), pgx.Identifier{template}.Sanitize())); err != nil {
		t.Fatalf("pgtest: create database from %s: %v", template, err)
	}
	url, err := localpg.WithDatabase(admin, name)
	if err != nil {
		t.Fatal(err)
	}
	db := &DB{Name: name, URL: url}
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	db.Pool = pool
	t.Cleanup(func() {
		if check {
			checkInvariants(t, pool)
		}
		pool.Close()
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, pgx.Identifier{name}.Sanitize())); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return db
}

// checkInvariants fails the test if the engine's tables hold a row that
// breaks its rules (qflow.invariant_violations), or if the check cannot run
// on a database whose schema has it. A database that cannot be reached any
// more, or whose schema the test changed (the function is missing, or
// migrations.Stale says so), is only logged.
func checkInvariants(t testing.TB, pool *pgxpool.Pool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var has bool
	if err := pool.QueryRow(ctx, `SELECT to_regprocedure('qflow.invariant_violations()') IS NOT NULL`).Scan(&has); err != nil {
		t.Logf("pgtest: invariants not checked: %v", err)
		return
	}
	if !has {
		t.Logf("pgtest: invariants not checked: no qflow.invariant_violations")
		return
	}
	stale, err := migrations.Stale(ctx, pool)
	if err != nil {
		t.Errorf("pgtest: invariants: %v", err)
		return
	}
	if stale {
		t.Logf("pgtest: invariants not checked: the test changed the schema")
		return
	}
	rows, err := pool.Query(ctx, `SELECT v FROM qflow.invariant_violations() AS v LIMIT 20`)
	if err != nil {
		t.Errorf("pgtest: invariants: %v", err)
		return
	}
	broken, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Errorf("pgtest: invariants: %v", err)
		return
	}
	if len(broken) > 0 {
		t.Errorf("pgtest: rows that break the engine's rules (qflow.invariant_violations):\n%s", strings.Join(broken, "\n"))
	}
}

var (
	tplOnce sync.Once
	tplName string
	tplErr  error
)

// templateName builds (once per process, and once per schema revision across
// processes) a migrated template database and returns its name.
func templateName(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	tplOnce.Do(func() { tplName, tplErr = buildTemplate(admin) })
	if tplErr != nil {
		t.Fatalf("pgtest: template: %v", tplErr)
	}
	return tplName
}

func buildTemplate(admin string) (string, error) {
	h := sha256.New()
	for _, m := range migrations.All() {
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00", m.Version, m.Name, m.SQL)
	}
	name := "qflowtpl_" + hex.EncodeToString(h.Sum(nil))[:12]
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	// Serialise template builds across test processes.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7170001)`); err != nil {
		return "", err
	}
	defer conn.Exec(ctx, `SELECT pg_advisory_unlock(7170001)`)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	// Drop templates of other schema revisions built more than an hour ago
	// (each template's comment holds its build time), so processes testing
	// different revisions at once never pull a template from under each
	// other; then build this one under a temporary name so a crash never
	// leaves a half-migrated template.
	rows, err := conn.Query(ctx, `
		SELECT datname FROM pg_database
		WHERE datname LIKE 'qflowtpl\_%' AND datname NOT LIKE '%\_build'
		  AND coalesce(substring(shobj_description(oid, 'pg_database') FROM '^built (\d+)$')::bigint, 0)
		      < extract(epoch FROM now()) - 3600`)
	if err != nil {
		return "", err
	}
	old, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	for _, o := range old {
		_, _ = conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s`, pgx.Identifier{o}.Sanitize()))
	}
	building := name + "_build"
	_, _ = conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, pgx.Identifier{building}.Sanitize()))
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE template0`, pgx.Identifier{building}.Sanitize())); err != nil {
		return "", err
	}
	u, err := localpg.WithDatabase(admin, building)
	if err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return "", err
	}
	err = migrations.Migrate(ctx, pool)
	pool.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`COMMENT ON DATABASE %s IS 'built %d'`, pgx.Identifier{building}.Sanitize(), time.Now().Unix())); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s RENAME TO %s`, pgx.Identifier{building}.Sanitize(), pgx.Identifier{name}.Sanitize())); err != nil {
		return "", err
	}
	return name, nil
}
