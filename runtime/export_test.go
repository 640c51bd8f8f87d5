package runtime

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Abandon stops the worker at once without touching the database, as if
// its process had died: its tasks stay claimed until their leases expire.
func (w *Worker) Abandon() { close(w.abandon) }

// Inlined counts the tasks the worker ran inline, in a chain (see
// WorkerOptions.ChainWindow).
func (w *Worker) Inlined() int64 { return w.inlined.Load() }

// LocalOutputsTaken counts the WaitRun calls that took their run's output
// from a local worker's settle.
func LocalOutputsTaken() int64 { return localOutputsTaken.Load() }

// StartRoundTrips counts the statements that started runs from a client's
// own pool.
func StartRoundTrips() int64 { return startRoundTrips.Load() }

// Local reports whether clients of the worker's pool in this process hand
// it their runs' first tasks (the worker is running).
func (w *Worker) Local() bool {
	return slices.Contains(localWorkers.list(w.local), w)
}

// ShortenRetention lets RetentionOptions.Interval go down to d until the
// test ends.
func ShortenRetention(t interface{ Cleanup(func()) }, d time.Duration) {
	old := minRetentionInterval
	minRetentionInterval = d
	t.Cleanup(func() { minRetentionInterval = old })
}

// ShortenUnserved makes WaitRun check for a live worker after d until the
// test ends.
func ShortenUnserved(t interface{ Cleanup(func()) }, d time.Duration) {
	old := unservedAfter
	unservedAfter = d
	t.Cleanup(func() { unservedAfter = old })
}

// QueuedStarts counts the starts waiting in c's batcher for a round trip.
func (c *Client) QueuedStarts() int {
	c.starts.mu.Lock()
	defer c.starts.mu.Unlock()
	n := 0
	for _, q := range c.starts.queues {
		n += len(q.waiting)
	}
	return n
}

// OnFire runs hook inside the transaction that fires a tick of a schedule,
// after the run started and before the commit; an error rolls it back.
func (w *Worker) OnFire(hook func(ctx context.Context, tx pgx.Tx, schedule string, tick time.Time) error) {
	w.fireHook = hook
}

// PausePump makes w's primary pump wait, before it takes anything, until
// the returned function is first called.
func (w *Worker) PausePump() (resume func()) { return hold(&w.paused) }

// hold sets a test hook's channel and returns the function that clears it
// and closes it, once.
func hold(hook *atomic.Pointer[chan struct{}]) (release func()) {
	ch := make(chan struct{})
	hook.Store(&ch)
	return sync.OnceFunc(func() {
		hook.Store(nil)
		close(ch)
	})
}

// HoldClaims makes w's primary pump hold each round trip that claims, once
// on its way (counted as such), until the returned function is first
// called.
func (w *Worker) HoldClaims() (release func()) { return hold(&w.claimsHeld) }

// Waiting counts the results waiting to be settled and the local starts
// waiting for the primary pump.
func (w *Worker) Waiting() (results, starts int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.finished), len(w.starts)
}

// Promotions counts w's promotions on their way.
func (w *Worker) Promotions() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.promotions
}
