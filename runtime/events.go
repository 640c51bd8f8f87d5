package runtime

import (
	"context"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5/pgxpool"
)

// eventsOffPool returns a pool with pool's configuration whose sessions
// start with qflow.events = 'off' (a startup parameter, so no extra round
// trip): qflow.publish sends nothing for transitions made on them. A
// worker with DisableEvents runs on such a pool, because the caller's pool
// may be shared with code that wants events.
func eventsOffPool(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Pool, error) {
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams = maps.Clone(cfg.ConnConfig.RuntimeParams)
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["qflow.events"] = "off"
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("qflow: worker pool with events off: %w", err)
	}
	return p, nil
}
