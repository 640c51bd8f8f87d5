package runtime

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// The keeper: heartbeats extend the leases of the tasks this worker holds
// and tell it which ones it must stop (cancelled runs, lost leases);
// upkeep cancels runs past their deadline (every PollInterval) and fails
// tasks whose lease expired with no attempts left (every third of a lease).

// keep runs until ctx ends.
func (w *Worker) keep(ctx context.Context) {
	interval := min(time.Second, w.opts.Lease/3)
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastUpkeep, lastBeat, lastLeases time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.abandon:
			return
		case <-t.C:
		}
		snapshot := w.snapshotHeld()
		// An idle worker only marks itself alive now and then: it must not
		// query faster than its poll interval.
		if len(snapshot) > 0 || time.Since(lastBeat) >= max(w.opts.Lease/3, w.opts.PollInterval) {
			lastBeat = time.Now()
			if err := w.beat(ctx, snapshot); err != nil && ctx.Err() == nil {
				w.log.Warn("qflow: heartbeat", "worker_id", w.id, "error", err)
			}
		}
		if time.Since(lastUpkeep) >= w.opts.PollInterval {
			lastUpkeep = time.Now()
			// Expired leases are looked for less often (every third of a
			// lease): that check reads every unfinished task.
			leases := time.Since(lastLeases) >= max(w.opts.PollInterval, w.opts.Lease/3)
			if leases {
				lastLeases = lastUpkeep
			}
			var runs, tasks int
			if err := w.pool.QueryRow(ctx, sqlUpkeep, leases).Scan(&runs, &tasks); err != nil {
				if ctx.Err() == nil {
					w.log.Warn("qflow: upkeep", "worker_id", w.id, "error", err)
				}
			} else if runs > 0 || tasks > 0 {
				if w.met != nil && tasks > 0 {
					w.met.leaseExpired.Add(ctx, int64(tasks), w.met.fromUpkeep)
				}
				w.log.Info("qflow upkeep", "worker_id", w.id, "runs_timed_out", runs, "tasks_lease_expired", tasks)
			}
		}
	}
}

// snapshotHeld copies the set of held tasks.
func (w *Worker) snapshotHeld() map[taskKey]*held {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[taskKey]*held, len(w.held))
	for k, h := range w.held {
		m[k] = h
	}
	return m
}

// beat extends the leases of the held tasks and cancels the handlers of
// those this worker must stop.
func (w *Worker) beat(ctx context.Context, snapshot map[taskKey]*held) error {
	keys := make([]taskKey, 0, len(snapshot))
	for k := range snapshot {
		keys = append(keys, k)
	}
	began := time.Now()
	rows, err := w.pool.Query(ctx, sqlHeartbeat, keyArgs(w.id, keys, w.opts.Lease.Milliseconds())...)
	if err != nil {
		return err
	}
	stop, err := pgx.CollectRows(rows, pgx.RowToStructByPos[taskKey])
	if err != nil {
		return err
	}
	w.leaseFloor.Store(began.UnixNano())
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range stop {
		// Only the attempt the heartbeat asked about: a newer attempt of the
		// same task (retried and claimed again meanwhile) is not stale.
		h := w.held[k]
		if h == nil || h != snapshot[k] || h.promoting {
			continue
		}
		if w.met != nil {
			w.met.leaseExpired.Add(ctx, 1, w.met.fromHeartbeat)
		}
		if h.cancel != nil {
			h.cancel(errCancelledByEngine)
			continue
		}
		// Claimed but not started: drop it, or a finished result: the
		// settle will find it no longer started and record nothing.
		for i, x := range w.waiting {
			if x == h {
				w.waiting = append(w.waiting[:i], w.waiting[i+1:]...)
				delete(w.held, k)
				break
			}
		}
	}
	return nil
}
