package runtime

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// sqlSetStepPriorities hands step priorities to the engine
// (qflow.set_step_priorities in migrations/0002_qflow.sql).
const sqlSetStepPriorities = `SELECT qflow.set_step_priorities($1::integer, $2::text[], $3::integer[])`

// SetStepPriorities sets the claim priorities of steps of the flow version
// with id flowID (as DefineFlow returns it), by step slug. Steps not named
// keep theirs; every step starts at 0. Once any step of the version has a
// non-zero priority, workers claim its ready tasks highest priority first
// (FIFO among equals); tasks already queued keep the priority they were
// queued with. A nil or empty map changes nothing. It fails with
// ErrUnknownFlow when no flow version has this id and with ErrInvalidFlow
// when a slug names no step of it.
func (c *Client) SetStepPriorities(ctx context.Context, flowID int, priorities map[string]int) error {
	if len(priorities) == 0 {
		return nil
	}
	slugs := make([]string, 0, len(priorities))
	for s := range priorities {
		slugs = append(slugs, s)
	}
	slices.Sort(slugs)
	prios := make([]int32, len(slugs))
	for i, s := range slugs {
		p := priorities[s]
		if p < math.MinInt32 || p > math.MaxInt32 {
			return fmt.Errorf("%w: step %q: priority %d does not fit in 32 bits", ErrInvalidFlow, s, p)
		}
		prios[i] = int32(p)
	}
	if _, err := c.pool.Exec(ctx, sqlSetStepPriorities, flowID, slugs, prios); err != nil {
		return mapError(fmt.Errorf("qflow: set step priorities of flow id %d: %w", flowID, err))
	}
	return nil
}
