package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/quantumflow/qflow/flowdef"
	"github.com/quantumflow/qflow/migrations"
)

// Client starts, waits for, inspects and cancels runs. It is safe for
// concurrent use.
type Client struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	events bool
	limits Limits

	tracer      trace.Tracer        // nil: no spans
	runsStarted metric.Int64Counter // nil: no metrics

	mu      sync.Mutex
	defined map[string]int // "slug/shape hash" -> flow id, flows this client has defined

	waiters *waitHub
	starts  startBatcher
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
	c := &Client{pool: pool, log: log, events: !opts.DisableEvents, limits: opts.Limits, defined: map[string]int{}}
	c.waiters = newWaitHub(pool, log, c.events)
	c.tracer = tracerFrom(opts.TracerProvider)
	if m := meterFrom(opts.MeterProvider); m != nil {
		var err error
		c.runsStarted, err = m.Int64Counter("qflow.run.started", metric.WithUnit("{run}"),
			metric.WithDescription("Runs a client started."))
		if err != nil {
			log.Warn("qflow: create metric", "error", err)
		}
	}
	return c
}

// Pool returns the client's connection pool.
func (c *Client) Pool() *pgxpool.Pool { return c.pool }

// Close stops the client's shared event listener, if it started one. The
// pool is the caller's and stays open.
func (c *Client) Close() { c.waiters.close() }

// Migrate brings the database schema up to date (see package migrations).
func (c *Client) Migrate(ctx context.Context) error { return migrations.Migrate(ctx, c.pool) }

// DefineFlow validates def and stores it in the database, returning the
// flow version's id. It is idempotent: the same shape returns the same id.
// A different shape under an existing slug is stored as the next version;
// runs keep the version they started on, and StartRun by slug uses the
// newest. Step priorities (StepOptions.Priority) are not part of the
// shape: when def sets any, they become the version's step priorities,
// for tasks queued from then on; when it sets none, the version's
// priorities are left as they are (see SetStepPriorities).
func (c *Client) DefineFlow(ctx context.Context, def FlowDef) (int, error) {
	return c.defineFlow(ctx, c.pool, def)
}

func (c *Client) defineFlow(ctx context.Context, db DB, def FlowDef) (int, error) {
	norm, err := def.Normalize()
	if err != nil {
		return 0, err
	}
	hash := norm.ShapeHash()
	// Priorities are not in the hash, but a definition that sets them
	// applies them (define_flow): a new set is defined again.
	key := def.Slug + "/" + hash + priorityKey(norm)
	c.mu.Lock()
	id, ok := c.defined[key]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err = storeFlow(ctx, db, def, norm, hash)
	if err != nil {
		return 0, err
	}
	if _, inTx := db.(pgx.Tx); !inTx { // a transaction may still roll back
		c.mu.Lock()
		c.defined[key] = id
		c.mu.Unlock()
	}
	return id, nil
}

// priorityKey is "" for a definition without step priorities, else its
// step priorities in step order.
func priorityKey(n flowdef.Normalized) string {
	var b strings.Builder
	set := false
	for _, s := range n.Steps {
		fmt.Fprintf(&b, "/%d", s.Priority)
		set = set || s.Priority != 0
	}
	if !set {
		return ""
	}
	return b.String()
}

// defineFlow validates and normalises def and stores it (the worker's way
// in; the client's goes through Client.defineFlow, which remembers ids).
func defineFlow(ctx context.Context, db DB, def FlowDef, hash string) (int, error) {
	norm, err := def.Normalize()
	if err != nil {
		return 0, err
	}
	return storeFlow(ctx, db, def, norm, hash)
}

// storeFlow calls qflow.define_flow with a definition Go has validated and
// normalised: the engine stores the normalised steps as they are, and
// keeps def as written for GetFlow.
func storeFlow(ctx context.Context, db DB, def FlowDef, norm flowdef.Normalized, hash string) (int, error) {
	body, err := json.Marshal(def)
	if err != nil {
		return 0, err
	}
	steps, err := json.Marshal(norm.Steps)
	if err != nil {
		return 0, err
	}
	var id int
	if err := db.QueryRow(ctx, sqlDefineFlow, def.Slug, hash, body, steps).Scan(&id); err != nil {
		return 0, mapError(fmt.Errorf("qflow: define flow %q: %w", def.Slug, err))
	}
	return id, nil
}

// encodeInput turns a run input into JSON. json.RawMessage and []byte are
// taken as JSON and must be valid.
func encodeInput(input any) ([]byte, error) {
	switch v := input.(type) {
	case json.RawMessage:
		if !json.Valid(v) {
			return nil, fmt.Errorf("%w: input is not valid JSON", ErrBadInput)
		}
		return v, nil
	case []byte:
		if !json.Valid(v) {
			return nil, fmt.Errorf("%w: input is not valid JSON", ErrBadInput)
		}
		return v, nil
	}
	b, err := json.Marshal(input)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	return b, nil
}

// startOpts are start_runs' options: opts, this client's settings and the
// trace context of ctx.
func (c *Client) startOpts(ctx context.Context, opts *StartOptions) map[string]any {
	o := map[string]any{"events": c.events}
	if tc := traceContext(ctx); tc != nil {
		o["trace_context"] = tc
	}
	if opts != nil {
		if opts.Timeout > 0 {
			o["timeout_ms"] = opts.Timeout.Milliseconds()
		}
		if opts.Retries != 0 {
			o["max_attempts"] = flowdef.Attempts(opts.Retries)
		}
		if opts.Sequential {
			o["sequential"] = true
		}
		if opts.Priority != 0 {
			o["priority"] = opts.Priority
		}
		switch opts.Events {
		case EventsOn:
			o["events"] = true
		case EventsOff:
			o["events"] = false
		}
		if opts.Key != "" {
			o["key"] = opts.Key
		}
		if len(opts.Keys) > 0 {
			keys := make([]*string, len(opts.Keys))
			for i := range opts.Keys {
				if opts.Keys[i] != "" {
					keys[i] = &opts.Keys[i]
				}
			}
			o["keys"] = keys
		}
	}
	return o
}

// keyed reports whether opts carry idempotency keys, after checking them
// against n inputs.
func keyed(opts *StartOptions, n int) (bool, error) {
	if opts == nil || (opts.Key == "" && len(opts.Keys) == 0) {
		return false, nil
	}
	if opts.Key != "" && len(opts.Keys) > 0 {
		return false, fmt.Errorf("%w: StartOptions: set Key or Keys, not both", ErrBadInput)
	}
	if len(opts.Keys) > 0 && len(opts.Keys) != n {
		return false, fmt.Errorf("%w: StartOptions.Keys has %d keys for %d inputs", ErrBadInput, len(opts.Keys), n)
	}
	for i, k := range append([]string{opts.Key}, opts.Keys...) {
		what := "Key"
		if i > 0 {
			what = fmt.Sprintf("Keys[%d]", i-1)
		}
		switch {
		case len(k) > MaxKeyBytes:
			return false, fmt.Errorf("%w: StartOptions.%s is %d bytes; at most %d (MaxKeyBytes)", ErrBadInput, what, len(k), MaxKeyBytes)
		case !utf8.ValidString(k):
			return false, fmt.Errorf("%w: StartOptions.%s is not valid UTF-8", ErrBadInput, what)
		case strings.IndexByte(k, 0) >= 0:
			return false, fmt.Errorf("%w: StartOptions.%s contains a NUL byte", ErrBadInput, what)
		}
	}
	return true, nil
}

// StartRun starts a run of the newest version of the flow with this slug
// and returns its id. input is encoded as JSON (json.RawMessage is taken
// as is). With opts.Key, a run of the flow that already holds the key is
// returned instead, with a nil error (see StartOptions.Key).
func (c *Client) StartRun(ctx context.Context, flow string, input any, opts *StartOptions) (uuid.UUID, error) {
	ids, _, err := c.startRuns(ctx, c.pool, flow, 0, []any{input}, opts)
	if err != nil {
		return uuid.Nil, err
	}
	return ids[0], nil
}

// StartRunTx is StartRun inside the caller's transaction: the run exists,
// and its first tasks become visible to workers, only if tx commits.
func (c *Client) StartRunTx(ctx context.Context, tx pgx.Tx, flow string, input any, opts *StartOptions) (uuid.UUID, error) {
	ids, _, err := c.startRuns(ctx, tx, flow, 0, []any{input}, opts)
	if err != nil {
		return uuid.Nil, err
	}
	return ids[0], nil
}

// StartRuns starts one run per input in one statement and returns their
// ids in input order. Either all runs start or none does. With keys
// (StartOptions.Key, Keys), an input whose key names an existing run, or
// the run of an earlier input of this call, gets that run's id and starts
// nothing.
func (c *Client) StartRuns(ctx context.Context, flow string, inputs []any, opts *StartOptions) ([]uuid.UUID, error) {
	ids, _, err := c.startRuns(ctx, c.pool, flow, 0, inputs, opts)
	return ids, err
}

// startRuns starts runs inside a span when the client traces: the span
// that starts runs is their task spans' parent. existing is nil unless
// opts carry keys; then it says which ids are of runs that existed.
func (c *Client) startRuns(ctx context.Context, db DB, slug string, flowID int, inputs []any, opts *StartOptions) (ids []uuid.UUID, existing []bool, err error) {
	if len(inputs) == 0 {
		return nil, nil, nil
	}
	var span trace.Span
	if c.tracer != nil {
		ctx, span = c.tracer.Start(ctx, "qflow.start "+slug, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attrFlow.String(slug), attrRunCount.Int(len(inputs))))
	}
	ids, existing, err = c.insertRuns(ctx, db, slug, flowID, inputs, opts)
	if span != nil {
		if len(ids) == 1 {
			span.SetAttributes(attrRunID.String(ids[0].String()))
		}
		endSpan(span, err)
	}
	if c.runsStarted != nil && len(ids) > 0 {
		n := int64(len(ids))
		for _, e := range existing {
			if e {
				n--
			}
		}
		c.runsStarted.Add(ctx, n, metric.WithAttributes(attrFlow.String(slug)))
	}
	return ids, existing, err
}

func (c *Client) insertRuns(ctx context.Context, db DB, slug string, flowID int, inputs []any, opts *StartOptions) ([]uuid.UUID, []bool, error) {
	if flowID == 0 && !ValidSlug(slug) {
		return nil, nil, fmt.Errorf("%w %q (not a valid flow slug)", ErrUnknownFlow, slug)
	}
	if opts != nil && (opts.Priority < math.MinInt32 || opts.Priority > math.MaxInt32) {
		return nil, nil, fmt.Errorf("%w: StartOptions.Priority %d does not fit in 32 bits", ErrBadInput, opts.Priority)
	}
	isKeyed, err := keyed(opts, len(inputs))
	if err != nil {
		return nil, nil, err
	}
	docs := make([]string, len(inputs))
	for i, in := range inputs {
		b, err := c.limits.encodeInput(in)
		if err != nil {
			return nil, nil, err
		}
		docs[i] = string(b)
	}
	optsJSON, _ := json.Marshal(c.startOpts(ctx, opts))
	if isKeyed {
		return c.startKeyed(ctx, db, slug, flowID, docs, optsJSON)
	}
	if db != DB(c.pool) {
		ids, err := c.startOn(ctx, db, slug, flowID, docs, optsJSON)
		return ids, nil, err
	}
	if len(docs) == 1 {
		ids, err := c.starts.start(ctx, c, startKey{slug: slug, flowID: flowID, opts: string(optsJSON)}, docs[0])
		return ids, nil, err
	}
	ids, err := c.startOnPool(ctx, slug, flowID, docs, optsJSON)
	return ids, nil, err
}

// startOnPool starts runs on the client's own pool, claiming their first
// tasks for a worker of this process when one has room (local.go).
func (c *Client) startOnPool(ctx context.Context, slug string, flowID int, docs []string, optsJSON []byte) ([]uuid.UUID, error) {
	startRoundTrips.Add(1)
	if lc := reserveLocal(c.pool, slug, len(docs)); lc != nil {
		ids, _, err := c.startLocal(ctx, lc, slug, flowID, docs, optsJSON)
		return ids, err
	}
	return c.startOn(ctx, c.pool, slug, flowID, docs, optsJSON)
}

// startKeyed starts runs with idempotency keys and reports which ids are
// of runs that existed. It never joins the start batcher (a keyed start
// has options of its own), nor claims for a local worker: it may wait on
// another transaction that holds the same key, and a local worker's room
// must not be held for as long.
func (c *Client) startKeyed(ctx context.Context, db DB, slug string, flowID int, docs []string, optsJSON []byte) ([]uuid.UUID, []bool, error) {
	if db == DB(c.pool) {
		startRoundTrips.Add(1)
	}
	var row pgx.Row
	if flowID != 0 {
		row = db.QueryRow(ctx, sqlStartKeyedByID, flowID, docs, optsJSON)
	} else {
		row = db.QueryRow(ctx, sqlStartKeyedBySlug, slug, docs, optsJSON)
	}
	var ids []uuid.UUID
	var existing []bool
	if err := row.Scan(&ids, &existing); errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownFlow, slug)
	} else if err != nil {
		return nil, nil, mapError(fmt.Errorf("qflow: start %q: %w", slug, err))
	}
	if len(ids) != len(docs) || len(existing) != len(docs) {
		return nil, nil, fmt.Errorf("qflow: start %q: %d runs for %d inputs", slug, len(ids), len(docs))
	}
	for i, id := range ids {
		if existing[i] {
			c.log.Debug("qflow run exists with this key", "run_id", id, "flow", slug)
		} else {
			c.log.Debug("qflow run started", "run_id", id, "flow", slug)
		}
	}
	return ids, existing, nil
}

// startOn runs the start statement on db.
func (c *Client) startOn(ctx context.Context, db DB, slug string, flowID int, docs []string, optsJSON []byte) ([]uuid.UUID, error) {
	var rows pgx.Rows
	var err error
	if flowID != 0 {
		rows, err = db.Query(ctx, sqlStartRunsByID, flowID, docs, optsJSON)
	} else {
		rows, err = db.Query(ctx, sqlStartRunsBySlug, slug, docs, optsJSON)
	}
	if err != nil {
		return nil, mapError(fmt.Errorf("qflow: start %q: %w", slug, err))
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, mapError(fmt.Errorf("qflow: start %q: %w", slug, err))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w %q", ErrUnknownFlow, slug)
	}
	if len(ids) != len(docs) {
		return nil, fmt.Errorf("qflow: start %q: %d runs started for %d inputs", slug, len(ids), len(docs))
	}
	for _, id := range ids {
		c.log.Debug("qflow run started", "run_id", id, "flow", slug)
	}
	return ids, nil
}

// StartFlow defines def if this client has not yet done so, then starts a
// run of that exact version. Generated Start<Flow> functions call it.
func (c *Client) StartFlow(ctx context.Context, def FlowDef, input any, opts *StartOptions) (*RunHandle, error) {
	id, err := c.defineFlow(ctx, c.pool, def)
	if err != nil {
		return nil, err
	}
	ids, existing, err := c.startRuns(ctx, c.pool, def.Slug, id, []any{input}, opts)
	if err != nil {
		return nil, err
	}
	return &RunHandle{ID: ids[0], Client: c, Existing: len(existing) > 0 && existing[0]}, nil
}

// StartFlowTx is StartFlow inside the caller's transaction.
func (c *Client) StartFlowTx(ctx context.Context, tx pgx.Tx, def FlowDef, input any, opts *StartOptions) (*RunHandle, error) {
	id, err := c.defineFlow(ctx, tx, def)
	if err != nil {
		return nil, err
	}
	ids, existing, err := c.startRuns(ctx, tx, def.Slug, id, []any{input}, opts)
	if err != nil {
		return nil, err
	}
	return &RunHandle{ID: ids[0], Client: c, Existing: len(existing) > 0 && existing[0]}, nil
}

// WaitRun blocks until the run ends and returns its output, or a *RunError
// when it failed or was cancelled, or ctx's error. With events on, it wakes
// on the run's terminal event and re-checks the run's state every second
// as a safety net; with events off (ClientOptions.DisableEvents), or while
// the event listener is not connected, it polls adaptively, from about a
// millisecond up to a quarter of a second, so it notices a finished run
// within a few milliseconds.
//
// A client with a TracerProvider records the wait as a span, qflow.wait,
// that ends when the run does, with the run's outcome.
func (c *Client) WaitRun(ctx context.Context, id uuid.UUID) (json.RawMessage, error) {
	if c.tracer == nil {
		return c.waitRun(ctx, id)
	}
	ctx, span := c.tracer.Start(ctx, "qflow.wait", trace.WithAttributes(attrRunID.String(id.String())))
	out, err := c.waitRun(ctx, id)
	var re *RunError
	switch {
	case err == nil:
		span.SetAttributes(attrRunStatus.String(StatusCompleted))
	case errors.As(err, &re):
		span.SetAttributes(attrRunStatus.String(re.Status), attribute.String("qflow.run.failed_step", re.Step))
	}
	endSpan(span, err)
	return out, err
}

func (c *Client) waitRun(ctx context.Context, id uuid.UUID) (json.RawMessage, error) {
	ch := c.waiters.subscribe(id)
	defer c.waiters.unsubscribe(id, ch)
	poll := time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	// A run that no live worker serves would wait for ever: say so, once.
	served := time.NewTimer(unservedAfter)
	defer served.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-served.C:
			flow, version, unserved, err := c.unserved(ctx, id)
			if err == nil && unserved {
				c.log.Warn("qflow: no live worker serves this run's flow version; the run waits until one starts",
					"run_id", id, "flow", flow, "flow_version", version)
				continue
			}
			served.Reset(6 * unservedAfter)
			continue
		case <-ch:
			if out, ok := c.waiters.result(id); ok {
				localOutputsTaken.Add(1)
				return out, nil // completed, handed over by a worker of this process
			}
		case <-timer.C:
		}
		out, done, err := c.runResult(ctx, id)
		if done || (err != nil && !transient(err)) {
			return out, err
		}
		var delay time.Duration
		switch {
		case err != nil: // connection lost: keep waiting, with backoff (transient.go)
			c.log.Warn("qflow: wait for run: retrying", "run_id", id, "error", err)
			poll = min(max(poll*2, 100*time.Millisecond), 2*time.Second)
			delay = poll
		case c.events && c.waiters.healthy():
			delay = time.Second // events do the work; this is the safety net
		default:
			delay = poll
			poll = min(poll*3/2, 250*time.Millisecond)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(delay)
	}
}

// unservedAfter is how long WaitRun waits before it checks that a live
// worker serves the run (tests shorten it).
var unservedAfter = 5 * time.Second

// runResult reads a run's outcome: done is false while it is running.
func (c *Client) runResult(ctx context.Context, id uuid.UUID) (json.RawMessage, bool, error) {
	var status string
	var output []byte
	var errText, step *string
	err := c.pool.QueryRow(ctx, sqlRunResult, id).Scan(&status, &output, &errText, &step)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, true, fmt.Errorf("%w: %s", ErrRunNotFound, id)
	}
	if err != nil {
		return nil, false, fmt.Errorf("qflow: wait for run %s: %w", id, err)
	}
	switch status {
	case StatusCompleted:
		return output, true, nil
	case StatusFailed, StatusCancelled:
		e := &RunError{RunID: id, Status: status}
		if errText != nil {
			e.Message = *errText
		}
		if step != nil {
			e.Step = *step
		}
		return nil, true, e
	}
	return nil, false, nil
}

// CancelRun cancels a run that has not finished: the run and its
// unfinished steps and tasks become cancelled, and workers running its tasks cancel the handlers' contexts at their next
// heartbeat (within about a second). It returns nil for a run that had
// already finished and ErrRunNotFound for an unknown id.
func (c *Client) CancelRun(ctx context.Context, id uuid.UUID) error {
	var cancelled bool
	for attempt := 1; ; attempt++ {
		err := c.pool.QueryRow(ctx, sqlCancelRun, id).Scan(&cancelled)
		if err == nil {
			break
		}
		// A deadlock with a concurrent transition of the same run is rare
		// (transitions lock the run first) but possible: try again.
		var pgErr *pgconn.PgError
		if attempt < 5 && errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") {
			c.log.Warn("qflow: cancel run: retrying after a deadlock", "run_id", id, "attempt", attempt)
			continue
		}
		return mapError(fmt.Errorf("qflow: cancel run %s: %w", id, err))
	}
	if cancelled {
		c.log.Info("qflow run cancelled", "run_id", id)
	}
	return nil
}

// RunHandle refers to a started run.
type RunHandle struct {
	ID     uuid.UUID
	Client *Client
	// Existing reports that the start carried an idempotency key
	// (StartOptions.Key) already held by this run, so nothing was started:
	// River's UniqueSkippedAsDuplicate. False for a run the call started.
	Existing bool
}

// Wait waits for the run and returns its JSON output (see Client.WaitRun).
func (h *RunHandle) Wait(ctx context.Context) (json.RawMessage, error) {
	return h.Client.WaitRun(ctx, h.ID)
}

// Cancel cancels the run (see Client.CancelRun).
func (h *RunHandle) Cancel(ctx context.Context) error { return h.Client.CancelRun(ctx, h.ID) }

// RunLocal runs one flow to completion with in-process workers: it defines
// the flow, starts a worker with handlers, starts a run with input, waits
// for it and stops the worker. It suits a plain main() or a test. opts
// configures the worker and may be nil. RunLocalWith also takes the run's
// StartOptions.
func (c *Client) RunLocal(ctx context.Context, def FlowDef, handlers map[string]Handler, input any, opts *WorkerOptions) (json.RawMessage, error) {
	return c.RunLocalWith(ctx, def, handlers, input, nil, opts)
}

// mapError turns the engine's SQLSTATEs into the package's typed errors.
func mapError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "QF404":
		return fmt.Errorf("%w: %s", ErrUnknownFlow, pgErr.Message)
	case "QF400":
		return fmt.Errorf("%w: %s", ErrBadInput, pgErr.Message)
	case "QF410":
		return fmt.Errorf("%w: %s", ErrRunNotFound, pgErr.Message)
	case "QF409":
		return fmt.Errorf("%w: %s", ErrRunNotResumable, pgErr.Message)
	case "22023":
		return fmt.Errorf("%w: %s", ErrInvalidFlow, pgErr.Message)
	case "22P02", "22P05", "22030", "22032":
		return fmt.Errorf("%w: %s", ErrBadInput, pgErr.Message)
	}
	return err
}
