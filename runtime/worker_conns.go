package runtime

import (
	"context"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ownPoolMin is the least a worker's pool holds: two pumps, the keeper,
// the schedules, two promotions and a subflow's look or start at once.
const ownPoolMin = 8

// ownPool returns the pool a running worker makes its engine statements on
// (round trips, heartbeats, upkeep, schedules, subflows, its LISTEN): a
// pool of its own with pool's configuration (connection settings, hooks),
// at least ownPoolMin connections large and with no idle connections kept
// open for their own sake (the application's MinConns are its own). The
// application's queries on pool then never make the worker's round trips
// and heartbeats wait for a connection, nor the worker's make the
// application's wait. (With one pool shared by the worker and a client
// polling it every 2 ms, W3 took 17% longer and W1b up to 30%:
// docs/benchmarks.md.) With eventsOff its sessions start with
// qflow.events = 'off' (a startup parameter, so no extra round trip):
// qflow.publish sends nothing for transitions made on them.
func ownPool(ctx context.Context, pool *pgxpool.Pool, eventsOff bool) (*pgxpool.Pool, error) {
	cfg := pool.Config()
	cfg.MaxConns = max(cfg.MaxConns, ownPoolMin)
	cfg.MinConns, cfg.MinIdleConns = 0, 0
	if eventsOff {
		cfg.ConnConfig.RuntimeParams = maps.Clone(cfg.ConnConfig.RuntimeParams)
		if cfg.ConnConfig.RuntimeParams == nil {
			cfg.ConnConfig.RuntimeParams = map[string]string{}
		}
		cfg.ConnConfig.RuntimeParams["qflow.events"] = "off"
	}
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("qflow: worker's pool: %w", err)
	}
	return p, nil
}
