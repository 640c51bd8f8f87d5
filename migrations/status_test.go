package migrations_test

import (
	"context"
	"testing"

	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/migrations"
)

func TestStatusPendingAppliedUnknown(t *testing.T) {
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	st, err := migrations.Status(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(migrations.All()) {
		t.Fatalf("fresh database: %d states, want %d", len(st), len(migrations.All()))
	}
	for _, s := range st {
		if !s.Pending() {
			t.Errorf("fresh database: %+v not pending", s)
		}
	}
	if err := migrations.Migrate(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO qflow.schema_migrations (version, name) VALUES (9999, 'future')`); err != nil {
		t.Fatal(err)
	}
	st, err = migrations.Status(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	last := st[len(st)-1]
	if last.Version != 9999 || !last.Unknown || last.Pending() {
		t.Errorf("last state %+v; want unknown 9999", last)
	}
	for _, s := range st[:len(st)-1] {
		if s.Pending() || s.AppliedAt == nil {
			t.Errorf("after migrate: %+v pending", s)
		}
	}
}
