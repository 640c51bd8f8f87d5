package runtime

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The worker's pool takes the caller's connection settings, but not its
// idle connections, and never fewer than ownPoolMin connections.
func TestOwnPoolSizes(t *testing.T) {
	cfg, err := pgxpool.ParseConfig("postgres://u@127.0.0.1:1/db?pool_max_conns=3&pool_min_conns=2&application_name=app")
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinIdleConns = 1 // (the pool's attempts to dial port 1 fail in the background)
	app, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	for _, off := range []bool{false, true} {
		own, err := ownPool(context.Background(), app, off)
		if err != nil {
			t.Fatal(err)
		}
		got := own.Config()
		own.Close()
		if got.MaxConns != ownPoolMin || got.MinConns != 0 || got.MinIdleConns != 0 {
			t.Errorf("eventsOff %v: MaxConns %d MinConns %d MinIdleConns %d, want %d 0 0", off, got.MaxConns, got.MinConns, got.MinIdleConns, ownPoolMin)
		}
		if got.ConnConfig.RuntimeParams["application_name"] != "app" {
			t.Errorf("eventsOff %v: application_name %q, want the caller's", off, got.ConnConfig.RuntimeParams["application_name"])
		}
		if ev, want := got.ConnConfig.RuntimeParams["qflow.events"], map[bool]string{true: "off"}[off]; ev != want {
			t.Errorf("eventsOff %v: qflow.events %q, want %q", off, ev, want)
		}
	}
}
