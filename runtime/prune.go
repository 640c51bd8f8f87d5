package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PruneOptions select the finished runs Prune deletes.
type PruneOptions struct {
	// OlderThan keeps runs that finished less than this long ago; it must be
	// positive.
	OlderThan time.Duration
	// Statuses limits pruning to runs that ended so: any of completed,
	// failed and cancelled (default: all three). Runs still going are never
	// pruned.
	Statuses []string
	// BatchSize is how many runs one transaction deletes (default 500, at
	// most 10,000), so no lock is held for long and nothing is rewritten.
	BatchSize int
}

// PruneResult counts what Prune deleted.
type PruneResult struct {
	Runs  int64 `json:"runs"`
	Steps int64 `json:"steps"`
	Tasks int64 `json:"tasks"`
	// Stats counts runs' entries in the statistics' record of runs already
	// folded in (the statistics themselves are kept).
	Stats int64 `json:"stats"`
}

// ErrBadPrune wraps the errors of Prune's options.
var ErrBadPrune = errors.New("qflow: prune")

// Prune deletes finished runs older than opts.OlderThan, with their step
// states and tasks, in batches of opts.BatchSize runs, one transaction per
// batch, and reports what it deleted. Runs still going are never touched,
// and a run being pruned by another Prune at the same moment is skipped.
// If ctx ends, the batches already deleted stay deleted and the count so
// far is returned with ctx's error.
func (c *Client) Prune(ctx context.Context, opts PruneOptions) (PruneResult, error) {
	var res PruneResult
	if opts.OlderThan <= 0 {
		return res, fmt.Errorf("%w: OlderThan must be positive (got %s): pruning would reach runs that just finished", ErrBadPrune, opts.OlderThan)
	}
	statuses := opts.Statuses
	if len(statuses) == 0 {
		statuses = []string{StatusCompleted, StatusFailed, StatusCancelled}
	}
	for _, s := range statuses {
		switch s {
		case StatusCompleted, StatusFailed, StatusCancelled:
		default:
			return res, fmt.Errorf("%w: status %q: want completed, failed or cancelled", ErrBadPrune, s)
		}
	}
	batch := opts.BatchSize
	if batch <= 0 {
		batch = 500
	}
	if batch > 10000 {
		return res, fmt.Errorf("%w: BatchSize %d: at most 10,000", ErrBadPrune, batch)
	}
	for {
		var b PruneResult
		err := c.pool.QueryRow(ctx, sqlPrune, statuses, opts.OlderThan.Milliseconds(), batch).
			Scan(&b.Runs, &b.Steps, &b.Tasks, &b.Stats)
		if err != nil {
			return res, fmt.Errorf("qflow: prune: %w", err)
		}
		res.Runs, res.Steps, res.Tasks, res.Stats = res.Runs+b.Runs, res.Steps+b.Steps, res.Tasks+b.Tasks, res.Stats+b.Stats
		if b.Runs < int64(batch) {
			return res, nil
		}
	}
}
