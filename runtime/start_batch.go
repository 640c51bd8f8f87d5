package runtime

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
)

// Starts that arrive together go together: while one StartRun of a flow is
// on its way to the server, other goroutines' StartRun calls of the same
// flow with the same options queue up, and the next round trip starts them
// all in one statement (one transaction, one commit). A lone StartRun goes
// at once, so batching adds no latency; under concurrency it saves a commit
// per run. If a batch fails, each of its starts is tried again on its own,
// so every caller gets the error its own input causes. The round trips are
// made by a goroutine of their own, so every caller's context is honoured:
// a caller whose context ends while its start waits in the queue takes it
// out; one whose start is on its way returns at once, and the run may still
// start, as with any call cut off on its way.

// maxStartBatch caps the runs one batched statement starts.
const maxStartBatch = 256

// startTimeout bounds one batched round trip, which no caller's context
// bounds (it carries several callers' starts).
const startTimeout = time.Minute

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

// startQueue is one key's waiting starts; busy while a goroutine drains it.
type startQueue struct {
	waiting []*startReq
	busy    bool
}

// startReq is one caller's start.
type startReq struct {
	doc  string
	id   uuid.UUID
	err  error
	done chan struct{} // closed when the start has happened or failed
}

// start starts one run with input doc, with the other starts of key that
// are waiting when the round trip leaves.
func (b *startBatcher) start(ctx context.Context, c *Client, key startKey, doc string) ([]uuid.UUID, error) {
	req := &startReq{doc: doc, done: make(chan struct{})}
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
		go b.drain(context.WithoutCancel(ctx), c, key, q)
	}
	b.mu.Unlock()

	select {
	case <-req.done:
		if req.err != nil {
			return nil, req.err
		}
		return []uuid.UUID{req.id}, nil
	case <-ctx.Done():
		b.mu.Lock()
		if i := slices.Index(q.waiting, req); i >= 0 {
			q.waiting = slices.Delete(q.waiting, i, i+1)
		}
		b.mu.Unlock()
		return nil, ctx.Err()
	}
}

// drain sends q's waiting starts, a batch per round trip, until none is
// left. ctx carries the first caller's values, not its cancellation.
func (b *startBatcher) drain(ctx context.Context, c *Client, key startKey, q *startQueue) {
	for {
		b.mu.Lock()
		batch := q.waiting[:min(len(q.waiting), maxStartBatch)]
		q.waiting = q.waiting[len(batch):]
		if len(batch) == 0 {
			q.busy = false
			if b.queues[key] == q {
				delete(b.queues, key)
			}
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, startTimeout)
		c.sendStarts(sctx, key, batch)
		cancel()
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
	// Only an error the server reported means the statement rolled back;
	// after any other (a lost connection, a timeout) the runs may have
	// started, and starting them again one by one could start them twice.
	if err != nil && len(batch) > 1 && rolledBack(err) {
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

// rolledBack reports whether a start that failed with err surely started
// nothing: the server reported an error (the statement's implicit
// transaction rolled back), or the statement was never sent.
func rolledBack(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) || errors.Is(err, ErrBadInput) || errors.Is(err, ErrUnknownFlow) ||
		errors.Is(err, ErrInvalidFlow) || pgconn.SafeToRetry(err)
}
