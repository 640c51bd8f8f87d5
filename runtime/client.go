package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/migrations"
)

// Client starts, waits for, inspects and cancels runs. It is safe for
// concurrent use.
type Client struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	events bool

	mu      sync.Mutex
	defined map[string]int // shape hash -> version, flows this client has defined
}

// NewClient returns a client on pool. opts may be nil.
func NewClient(pool *pgxpool.Pool, opts *ClientOptions) *Client {
	if opts == nil {
		opts = &ClientOptions{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Client{pool: pool, log: log, events: !opts.DisableEvents, defined: map[string]int{}}
}

// Pool returns the client's connection pool.
func (c *Client) Pool() *pgxpool.Pool { return c.pool }

// Migrate brings the database schema up to date (see package migrations).
func (c *Client) Migrate(ctx context.Context) error { return migrations.Migrate(ctx, c.pool) }

var errUnimplemented = errors.New("qflow: not implemented yet")

// DefineFlow stores def in the database (idempotent) and returns its version.
func (c *Client) DefineFlow(ctx context.Context, def FlowDef) (int, error) {
	return 0, errUnimplemented
}

// StartRun starts a run of the flow with this slug and returns its id.
func (c *Client) StartRun(ctx context.Context, flow string, input any, opts *StartOptions) (uuid.UUID, error) {
	return uuid.Nil, errUnimplemented
}

// StartRunTx is StartRun inside the caller's transaction: the run exists,
// and its first tasks become visible to workers, only if tx commits.
func (c *Client) StartRunTx(ctx context.Context, tx pgx.Tx, flow string, input any, opts *StartOptions) (uuid.UUID, error) {
	return uuid.Nil, errUnimplemented
}

// StartRuns starts one run per input in one statement.
func (c *Client) StartRuns(ctx context.Context, flow string, inputs []any, opts *StartOptions) ([]uuid.UUID, error) {
	return nil, errUnimplemented
}

// StartFlow defines def if this client has not yet done so, then starts a
// run of it. Generated Start<Flow> functions call it.
func (c *Client) StartFlow(ctx context.Context, def FlowDef, input any, opts *StartOptions) (*RunHandle, error) {
	return nil, errUnimplemented
}

// StartFlowTx is StartFlow inside the caller's transaction.
func (c *Client) StartFlowTx(ctx context.Context, tx pgx.Tx, def FlowDef, input any, opts *StartOptions) (*RunHandle, error) {
	return nil, errUnimplemented
}

// WaitRun blocks until the run ends and returns its output, or a *RunError
// when it failed or was cancelled.
func (c *Client) WaitRun(ctx context.Context, id uuid.UUID) (json.RawMessage, error) {
	return nil, errUnimplemented
}

// CancelRun cancels a run that has not finished; it is a no-op on a
// finished run.
func (c *Client) CancelRun(ctx context.Context, id uuid.UUID) error {
	return errUnimplemented
}

// RunHandle refers to a started run.
type RunHandle struct {
	ID     uuid.UUID
	Client *Client
}

// Wait waits for the run and returns its JSON output (see Client.WaitRun).
func (h *RunHandle) Wait(ctx context.Context) (json.RawMessage, error) {
	return h.Client.WaitRun(ctx, h.ID)
}

// Cancel cancels the run (see Client.CancelRun).
func (h *RunHandle) Cancel(ctx context.Context) error { return h.Client.CancelRun(ctx, h.ID) }

// RunLocal runs one flow to completion with in-process workers: it defines
// the flow, starts a worker with handlers, starts a run with input, waits
// for it and stops the worker. It suits a plain main() or a test.
func (c *Client) RunLocal(ctx context.Context, def FlowDef, handlers map[string]Handler, input any, opts *WorkerOptions) (json.RawMessage, error) {
	return nil, errUnimplemented
}
