package runtime

import (
	"context"
	"slices"
	"sync"

	"github.com/google/uuid"
)

// Starts that arrive together go together: while one StartRun of a flow is
// on its way to the server, other goroutines' StartRun calls of the same
// flow with the same options queue up, and the next round trip starts them
// all in one statement (one transaction, one commit). A lone StartRun goes
// at once, so batching adds no latency; under concurrency it saves a commit
// per run. If a batch fails, each of its starts is tried again on its own,
// so every caller gets the error its own input causes.

// maxStartBatch caps the runs one batched statement starts.
const maxStartBatch = 256

// startKey is what batched starts must share.
type startKey struct {
	slug   string
	flowID int
	opts   string // start_runs' options, JSON
}

// startBatcher queues concurrent single starts by key.
type startBatcher struct {
	mu     sync.Mutex
	queues map[startKey]*startQueue
}

// startQueue is one key's waiting starts; busy while a leader sends them.
type startQueue struct {
	waiting []*startReq
	busy    bool
}

// startReq is one caller's start.
type startReq struct {
	doc      string
	id       uuid.UUID
	err      error
	done     chan struct{} // closed when the start has happened or failed
	promote  chan struct{} // closed when this caller is to lead the next round trip
	promoted bool          // under startBatcher.mu
}

// start starts one run with input doc. The caller that finds no round trip
// of its key on the way leads: it sends the waiting starts (its own among
// them) in one round trip, then hands the lead to the first start still
// waiting, if any, and returns. The others wait for their result or the
// lead.
func (b *startBatcher) start(ctx context.Context, c *Client, key startKey, doc string) ([]uuid.UUID, error) {
	req := &startReq{doc: doc, done: make(chan struct{}), promote: make(chan struct{})}
	b.mu.Lock()
	if b.queues == nil {
		b.queues = map[startKey]*startQueue{}
	}
	q := b.queues[key]
	if q == nil {
		q = &startQueue{}
		b.queues[key] = q
	}
	q.waiting = append(q.waiting, req)
	if !q.busy {
		q.busy = true
		req.promoted = true
		close(req.promote)
	}
	b.mu.Unlock()

	cancelled, promote := ctx.Done(), req.promote
	for {
		select {
		case <-req.done:
			if req.err != nil {
				return nil, req.err
			}
			return []uuid.UUID{req.id}, nil
		case <-promote:
			b.lead(ctx, c, key, q)
			promote = nil // req was in the batch just sent: done is closed
		case <-cancelled:
			b.mu.Lock()
			if i := slices.Index(q.waiting, req); i >= 0 && !req.promoted {
				q.waiting = slices.Delete(q.waiting, i, i+1)
				b.mu.Unlock()
				return nil, ctx.Err()
			}
			b.mu.Unlock()
			// Already on its way, or leading: at most one round trip more.
			cancelled = nil
		}
	}
}

// lead sends one round trip of q's waiting starts, then hands the lead on.
func (b *startBatcher) lead(ctx context.Context, c *Client, key startKey, q *startQueue) {
	b.mu.Lock()
	batch := q.waiting[:min(len(q.waiting), maxStartBatch)]
	q.waiting = q.waiting[len(batch):]
	b.mu.Unlock()
	// The statement must not depend on this caller's cancellation: it
	// carries other callers' starts.
	c.sendStarts(context.WithoutCancel(ctx), key, batch)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(q.waiting) > 0 {
		next := q.waiting[0]
		next.promoted = true
		close(next.promote)
		return
	}
	q.busy = false
	if b.queues[key] == q {
		delete(b.queues, key)
	}
}

// sendStarts starts batch in one statement, or each on its own if that
// fails, and wakes every caller.
func (c *Client) sendStarts(ctx context.Context, key startKey, batch []*startReq) {
	docs := make([]string, len(batch))
	for i, r := range batch {
		docs[i] = r.doc
	}
	ids, err := c.startOnPool(ctx, key.slug, key.flowID, docs, []byte(key.opts))
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			c.sendStarts(ctx, key, []*startReq{r})
		}
		return
	}
	for i, r := range batch {
		if err != nil {
			r.err = err
		} else {
			r.id = ids[i]
		}
		close(r.done)
	}
}
