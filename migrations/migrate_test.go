package migrations_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/migrations"
)

func TestMigrateFreshIdempotentConcurrent(t *testing.T) {
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	if v, err := migrations.Version(ctx, db.Pool); err != nil || v != 0 {
		t.Fatalf("fresh database: version %d, %v; want 0", v, err)
	}
	// Four migrators at once: the advisory lock must serialise them.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = migrations.Migrate(ctx, db.Pool) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i, err)
		}
	}
	var applied int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.schema_migrations`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if want := len(migrations.All()); applied != want {
		t.Fatalf("applied %d migrations, want %d", applied, want)
	}
	if v, _ := migrations.Version(ctx, db.Pool); v != migrations.Latest() {
		t.Fatalf("version %d, want %d", v, migrations.Latest())
	}
	// Up to date: a no-op.
	if err := migrations.Migrate(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateTxRolledBackLeavesNothing(t *testing.T) {
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrations.MigrateTx(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := migrations.Version(ctx, db.Pool); err != nil || v != 0 {
		t.Fatalf("after rollback: version %d, %v; want 0", v, err)
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO qflow.schema_migrations (version, name) VALUES ($1, 'from_the_future')`, migrations.Latest()+1); err != nil {
		t.Fatal(err)
	}
	err := migrations.Migrate(ctx, db.Pool)
	if !errors.Is(err, migrations.ErrNewerSchema) {
		t.Fatalf("Migrate on a newer schema: %v; want ErrNewerSchema", err)
	}
}

func TestAllOrdered(t *testing.T) {
	all := migrations.All()
	for i := 1; i < len(all); i++ {
		if all[i].Version <= all[i-1].Version {
			t.Fatalf("migrations out of order or duplicated: %d after %d", all[i].Version, all[i-1].Version)
		}
	}
	if all[0].Name != "pgmq" {
		t.Fatalf("first migration is %q, want pgmq", all[0].Name)
	}
}

// TestMigrateRefusesStaleSchema: a database migrated by an earlier
// pre-release build (same migration numbers, older engine tables) gets a
// clear error with the way out, and nothing is changed.
func TestMigrateRefusesStaleSchema(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if stale, err := migrations.Stale(ctx, db.Pool); err != nil || stale {
		t.Fatalf("a current database: stale=%v, %v", stale, err)
	}
	// The pre-release layout had no seq column (tasks lived in pgmq queues).
	if _, err := db.Pool.Exec(ctx, `ALTER TABLE qflow.step_tasks DROP COLUMN seq CASCADE`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, db.Pool); err != nil || !stale {
		t.Fatalf("stale=%v, %v; want stale", stale, err)
	}
	err := migrations.Migrate(ctx, db.Pool)
	if !errors.Is(err, migrations.ErrStaleSchema) || !strings.Contains(err.Error(), "DROP SCHEMA qflow CASCADE") {
		t.Fatalf("Migrate: %v; want ErrStaleSchema with the way out", err)
	}
	// Nor can a database whose define_flow predates flowdef's normalised
	// definitions (it read options as Go nanosecond durations).
	old := pgtest.New(t)
	if _, err := old.Pool.Exec(ctx, `DROP FUNCTION qflow.define_flow(text, text, jsonb, jsonb);
		CREATE FUNCTION qflow.define_flow(p_slug text, p_shape_hash text, p_def jsonb) RETURNS integer
		LANGUAGE sql AS 'SELECT 0'`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, old.Pool); err != nil || !stale {
		t.Fatalf("old define_flow: stale=%v, %v; want stale", stale, err)
	}
	// Nor had it the columns of idempotent starts and resumes.
	before := pgtest.New(t)
	if _, err := before.Pool.Exec(ctx, `ALTER TABLE qflow.runs DROP COLUMN idempotency_key CASCADE, DROP COLUMN resumes CASCADE`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, before.Pool); err != nil || !stale {
		t.Fatalf("runs without idempotency_key and resumes: stale=%v, %v; want stale", stale, err)
	}
	// Nor one from before run priorities (its define_flow ignored step
	// priorities and its start_steps knew no run priority).
	noPrio := pgtest.New(t)
	if _, err := noPrio.Pool.Exec(ctx, `ALTER TABLE qflow.runs DROP COLUMN priority CASCADE`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, noPrio.Pool); err != nil || !stale {
		t.Fatalf("runs without priority: stale=%v, %v; want stale", stale, err)
	}
	// Nor one from before conditional and optional steps (its settle
	// completed a NULL output, where it now records a skip).
	noSkip := pgtest.New(t)
	if _, err := noSkip.Pool.Exec(ctx, `ALTER TABLE qflow.steps DROP COLUMN absent_ok CASCADE`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, noSkip.Pool); err != nil || !stale {
		t.Fatalf("steps without absent_ok: stale=%v, %v; want stale", stale, err)
	}
	// Nor one from before limits (its tasks have no lanes).
	noLimits := pgtest.New(t)
	if _, err := noLimits.Pool.Exec(ctx, `ALTER TABLE qflow.step_tasks DROP COLUMN lane CASCADE`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, noLimits.Pool); err != nil || !stale {
		t.Fatalf("step_tasks without lane: stale=%v, %v; want stale", stale, err)
	}
	// Nor one from earlier in this build's making (a start_steps that
	// cannot create tasks claimed).
	oldClaim := pgtest.New(t)
	if _, err := oldClaim.Pool.Exec(ctx, `ALTER FUNCTION qflow.start_steps(uuid[], smallint[], uuid, integer, bigint, boolean) RENAME TO start_steps_new;
		CREATE FUNCTION qflow.start_steps(p_runs uuid[], p_steps smallint[]) RETURNS void LANGUAGE plpgsql
		AS $$BEGIN PERFORM qflow.hold_waits(NULL, clock_timestamp()); END$$`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, oldClaim.Pool); err != nil || !stale {
		t.Fatalf("no start_steps with claims: stale=%v, %v; want stale", stale, err)
	}
	// Nor one whose finish_tasks records no step statistics (before every flow
	// learned), or whose statistics migration predates the engine's
	// recording.
	noStats := pgtest.New(t)
	if _, err := noStats.Pool.Exec(ctx, `DROP TABLE qflow.step_stats_pending`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, noStats.Pool); err != nil || !stale {
		t.Fatalf("no step_stats_pending: stale=%v, %v; want stale", stale, err)
	}
	noHook := pgtest.New(t)
	if _, err := noHook.Pool.Exec(ctx, `DO $$BEGIN
		EXECUTE replace(pg_get_functiondef('qflow.finish_tasks(uuid, uuid[], smallint[], integer[], jsonb[], uuid[], smallint[], integer[], text[], boolean[], bigint[], qflow.done_task[], text[], timestamptz)'::regprocedure),
		                'qflow.record_completions(', 'qflow.no_completions(');
	END$$`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, noHook.Pool); err != nil || !stale {
		t.Fatalf("a finish_tasks without record_completions: stale=%v, %v; want stale", stale, err)
	}
	// Nor one whose settle takes no snoozes (before runtime.Snooze).
	noSnooze := pgtest.New(t)
	if _, err := noSnooze.Pool.Exec(ctx, `DROP FUNCTION qflow.settle(uuid, uuid[], smallint[], integer[], jsonb[], uuid[], smallint[], integer[], text[], boolean[], bigint[],
		uuid[], smallint[], integer[], jsonb[], text[], boolean[], bigint[], integer, integer, bigint)`); err != nil {
		t.Fatal(err)
	}
	if stale, err := migrations.Stale(ctx, noSnooze.Pool); err != nil || !stale {
		t.Fatalf("a settle without snoozes: stale=%v, %v; want stale", stale, err)
	}
	// An empty database is not stale.
	empty := pgtest.NewEmpty(t)
	if stale, err := migrations.Stale(ctx, empty.Pool); err != nil || stale {
		t.Fatalf("an empty database: stale=%v, %v", stale, err)
	}
}

// A database migrated while runs, step_states and step_tasks still had CHECK
// constraints loses them with migration 0008 and gains
// qflow.invariant_violations.
func TestMigrateDropsTheHotTablesChecks(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	// As an earlier build left it: version 7, the CHECKs, no function.
	if _, err := db.Pool.Exec(ctx, `
		DROP FUNCTION qflow.invariant_violations();
		DELETE FROM qflow.schema_migrations WHERE version = 8;
		ALTER TABLE qflow.runs ADD CHECK (remaining_steps >= 0), ADD CHECK ((status = 'started') = (finished_at IS NULL));
		ALTER TABLE qflow.step_states ADD CHECK (remaining_tasks >= 0);
		ALTER TABLE qflow.step_tasks ADD CHECK (attempts >= 0)`); err != nil {
		t.Fatal(err)
	}
	checks := func() int {
		t.Helper()
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE contype = 'c'
			AND conrelid IN ('qflow.runs'::regclass, 'qflow.step_states'::regclass, 'qflow.step_tasks'::regclass)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := checks(); n != 4 {
		t.Fatalf("%d CHECKs before, want 4", n)
	}
	if err := migrations.Migrate(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if n := checks(); n != 0 {
		t.Fatalf("%d CHECKs after migration 0008, want 0", n)
	}
	var broken int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.invariant_violations()`).Scan(&broken); err != nil || broken != 0 {
		t.Fatalf("invariant_violations: %d, %v", broken, err)
	}
}
