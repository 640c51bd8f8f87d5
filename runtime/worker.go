package runtime

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Worker claims and executes tasks of the flows registered with it. Any
// number of workers, in any number of processes, may share a database.
type Worker struct {
	pool *pgxpool.Pool
	opts WorkerOptions
}

// NewWorker returns a worker on pool. opts may be nil.
func NewWorker(pool *pgxpool.Pool, opts *WorkerOptions) *Worker {
	w := &Worker{pool: pool}
	if opts != nil {
		w.opts = *opts
	}
	return w
}

// Register adds a flow and a handler for each of its steps. It must be
// called before Run.
func (w *Worker) Register(def FlowDef, handlers map[string]Handler) error {
	return errUnimplemented
}

// Run claims and executes tasks until ctx ends, then shuts down gracefully:
// it stops claiming, lets in-flight handlers finish within
// ShutdownTimeout, and releases what is left for other workers.
func (w *Worker) Run(ctx context.Context) error {
	return errUnimplemented
}
