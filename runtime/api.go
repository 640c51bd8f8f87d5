package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// DB is what the runtime needs from a connection: satisfied by
// *pgxpool.Pool, *pgx.Conn and pgx.Tx.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Task is one unit of work handed to a Handler.
type Task struct {
	RunID   uuid.UUID // the run the task belongs to
	Flow    string    // flow slug
	Step    string    // step slug
	Index   int       // element index for a map step, 0 otherwise
	Attempt int       // 1 for the first try
	// Input is the task's JSON input. For a map step it is the element; for
	// other steps an object with the flow input under "run"
	// (flowdef.InputKey, when the step takes it) and each dependency's
	// output under the dependency's slug, and for a step that waits for a
	// signal (StepDef.Wait) the signal's payload under SignalKey.
	Input json.RawMessage
}

// Handler executes one task and returns its JSON output. Returning an error
// fails the attempt; wrap it with Permanent to skip the remaining attempts.
type Handler func(ctx context.Context, task *Task) (json.RawMessage, error)

// Permanent marks err as not worth retrying: the task fails at once.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err, or an error it wraps, was made by Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Errors callers can test with errors.Is.
var (
	// ErrUnknownFlow: the flow slug is not defined in the database.
	ErrUnknownFlow = errors.New("qflow: unknown flow")
	// ErrBadInput: the run input cannot be used (not JSON, or not an array for a root map step).
	ErrBadInput = errors.New("qflow: bad input")
	// ErrRunFailed: the run failed; errors.As with *RunError gives the details.
	ErrRunFailed = errors.New("qflow: run failed")
	// ErrRunCancelled: the run was cancelled (by CancelRun or its timeout).
	ErrRunCancelled = errors.New("qflow: run cancelled")
	// ErrRunNotFound: no run has this id.
	ErrRunNotFound = errors.New("qflow: run not found")
	// ErrShapeMismatch: a definition differs from the stored one with the same slug and version,
	// or (ResumeRun) from the run's version in the part to re-run.
	ErrShapeMismatch = errors.New("qflow: flow shape differs from the database")
	// ErrRunNotResumable: ResumeRun was given a run that is still running or has completed.
	ErrRunNotResumable = errors.New("qflow: run cannot be resumed")
)

// RunError describes a failed or cancelled run. It matches ErrRunFailed or
// ErrRunCancelled with errors.Is.
type RunError struct {
	RunID   uuid.UUID
	Status  string // "failed" or "cancelled"
	Step    string // the step that failed, if any
	Message string // the step's last error, or the reason for cancellation
}

func (e *RunError) Error() string {
	if e.Step != "" {
		return fmt.Sprintf("qflow: run %s %s at step %q: %s", e.RunID, e.Status, e.Step, e.Message)
	}
	return fmt.Sprintf("qflow: run %s %s: %s", e.RunID, e.Status, e.Message)
}

// Is makes errors.Is(err, ErrRunFailed / ErrRunCancelled) work.
func (e *RunError) Is(target error) bool {
	return (target == ErrRunFailed && e.Status == StatusFailed) ||
		(target == ErrRunCancelled && e.Status == StatusCancelled)
}

// Statuses of runs, steps and tasks.
const (
	StatusCreated   = "created"
	StatusQueued    = "queued"
	StatusStarted   = "started"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	// StatusSkipped is a step's or a task's, never a run's: the step's
	// condition was false (StepDef.When), a dependency it does not take
	// the skip of was skipped, or it is an optional step that failed
	// (StepDef.Optional; its Error says why). A skipped step has no output;
	// a run whose steps completed or were skipped completes.
	StatusSkipped = "skipped"
	// StatusWaiting is a step's, in GetRun: the step waits for a signal
	// (StepDef.Wait) its run has not received; it has no task yet.
	StatusWaiting = "waiting"
)

// StartOptions tune one run. A nil *StartOptions means all defaults.
type StartOptions struct {
	// Timeout cancels the whole run when it has not finished in time (0: none).
	Timeout time.Duration
	// Retries overrides the retries of every step of this run: how many
	// times a failed task is tried again after its first attempt. 0 keeps
	// each step's own; NoRetries means one attempt and no retry.
	Retries int
	// Sequential runs at most one task of the run at a time (the seed's parallel: false).
	Sequential bool
	// Priority orders this run's tasks against other runs' tasks of the
	// same flow version (0, the default, is normal; higher is claimed
	// sooner; negative is allowed). A task's claim priority is its step's
	// StepOptions.Priority plus its run's Priority, clamped to 32 bits:
	// workers claim ready tasks highest claim priority first, first queued
	// first among equals. So where steps have equal priorities (or none) a
	// run's ready tasks are all claimed before those of any lower-priority
	// run, and a run started later with a higher priority overtakes a
	// backlog; where step priorities differ, a run priority larger than
	// their spread keeps that order. It must fit in 32 bits. Priorities
	// order claims only: a task already claimed or running is not
	// preempted (see "Priorities" in the README).
	Priority int
	// Events turns this run's NOTIFY events on or off whatever the client's
	// ClientOptions.DisableEvents says (the seed's per-call notify_events);
	// EventsDefault follows the client. A worker with
	// WorkerOptions.DisableEvents publishes none either way.
	Events Events
	// Key makes the start idempotent: a run of this flow (by slug, any
	// version) that already holds the key is returned instead of a new one,
	// with a nil error, and nothing is started (RunHandle.Existing tells a
	// StartFlow caller which happened). A key lives as long as its run:
	// once Prune deletes the run, the key can start a new one. At most
	// MaxKeyBytes bytes of valid UTF-8 without NUL; "" means no key. With
	// StartRuns, every input gets this key: the first starts the run and
	// the others get its id. Concurrent starts of one key, in any number of
	// processes, get the same run.
	Key string
	// Keys gives StartRuns one key per input (same length as the inputs;
	// "" for none), with Key's rules; inputs are taken in order, so a key
	// repeated within the call gets the run of its first input. Setting both
	// Key and Keys is an error.
	Keys []string
}

// MaxKeyBytes is the longest StartOptions.Key, in bytes.
const MaxKeyBytes = 255

// ResumeOptions tune ResumeRun. A nil *ResumeOptions means all defaults.
type ResumeOptions struct {
	// Flow is the caller's current definition of the run's flow (generated
	// code passes its own; nil skips the check). When its shape differs from
	// the run's version, ResumeRun refuses with ErrShapeMismatch, naming
	// what differs, unless the part to re-run is the same in both: every
	// step that did not complete and every step it depends on, directly or
	// not, with the same dependencies, map and input flags and effective
	// options, and the steps that did not complete with the same dependents.
	// The run keeps its version either way, so its tasks go to workers
	// registered with that version.
	Flow *FlowDef
	// Retries is how many times a task may be tried again after its first
	// attempt, for the resumed tasks and the run's steps that start from now
	// on (0 keeps the run's own: its StartOptions.Retries or each step's;
	// NoRetries allows one attempt).
	Retries int
	// Timeout is a new deadline for the whole run, from now (0: none; the
	// deadline the run started with does not carry over).
	Timeout time.Duration
}

// Events is a run's events setting (StartOptions.Events).
type Events int8

const (
	// EventsDefault follows ClientOptions.DisableEvents.
	EventsDefault Events = iota
	// EventsOn publishes the run's events.
	EventsOn
	// EventsOff publishes none of the run's events.
	EventsOff
)

// ClientOptions configure a Client. A nil *ClientOptions means all defaults.
type ClientOptions struct {
	// Logger receives a structured line per transition (default slog.Default()).
	Logger *slog.Logger
	// DisableEvents stops the runs this client starts from publishing NOTIFY events.
	DisableEvents bool
	// Limits bound flow inputs (size, nesting); zero means the defaults.
	Limits Limits
	// TracerProvider records a span for each StartRun/StartRuns call (the
	// parent of the runs' task spans) and for each WaitRun. Nil (or the
	// no-op provider) records nothing. Either way, the caller's trace
	// context at StartRun is stored with the run. See "Observability" in
	// the package docs.
	TracerProvider trace.TracerProvider
	// MeterProvider records the qflow.run.started counter. Nil (or the
	// no-op provider) records nothing.
	MeterProvider metric.MeterProvider
}

// DefaultConcurrency is a worker's default number of handler slots.
const DefaultConcurrency = 32

// DefaultChainWindow is how long a worker's slot may run a chain of a
// run's steps in process before their results are recorded (see
// WorkerOptions.ChainWindow).
const DefaultChainWindow = 10 * time.Millisecond

// DefaultBatchSize is a worker's default claim batch. Measured with
// instant handlers (qflowbench, interleaved): a 10,000-element map took
// 0.69 s with batches of 64 and 0.59 with 128 at 8 slots; at 64 slots 128
// was also the fastest for 2,000 chains started at once (256 was slower:
// chains then settle several hundred at a time).
const DefaultBatchSize = 128

// WorkerOptions configure a Worker. A nil *WorkerOptions means all defaults.
type WorkerOptions struct {
	// Concurrency is the number of handlers run at once (default
	// DefaultConcurrency). See "Sizing a worker" in the README.
	Concurrency int
	// BatchSize caps the tasks claimed in one round trip (default
	// DefaultBatchSize). While handlers are quick a worker claims ahead of
	// its free slots, so the next tasks are ready when slots free up: up to
	// 2 × BatchSize tasks while they average under 5ms, Concurrency under
	// 50ms, none above (see "Sizing a worker" in the README).
	BatchSize int
	// PollInterval is how often an idle worker looks for work when no
	// notification arrives (default 1s).
	PollInterval time.Duration
	// Lease is how long a claimed task stays reserved for this worker
	// without a heartbeat; the worker heartbeats every second (or Lease/3)
	// to extend the leases of what it runs, so a task of a dead worker is
	// claimed again at most Lease after its last heartbeat (default 30s).
	Lease time.Duration
	// ChainWindow lets a slot run a run's next step in process, right after
	// the step it depends on, while the chain's handlers have taken less
	// than ChainWindow since the first of them started (default
	// DefaultChainWindow; negative: never). The next step must be a single
	// step whose only dependency is the step just completed, with no start
	// delay, in a run that is not sequential, of a flow without step
	// priorities. The chain's results are recorded together in one
	// transaction, as if each task had been claimed when its dependency
	// completed, with the same events; a crash before that runs the chain
	// again from its first task, as a crash loses any unrecorded result.
	// So a chain of quick steps costs one commit instead of one per step.
	// A step still running when the window closes is claimed for the
	// worker then (promoted), with the results before it recorded; at most
	// two promotions are on their way at once, the others take their turn
	// while their handlers run on. See "Chains run in process" in the
	// README.
	ChainWindow time.Duration
	// ShutdownTimeout bounds how long Run waits for in-flight handlers after
	// its context ends before releasing their tasks (default 30s).
	ShutdownTimeout time.Duration
	// Logger receives a structured line per task (default slog.Default()).
	Logger *slog.Logger
	// DisableEvents stops this worker's transitions from publishing NOTIFY events.
	DisableEvents bool
	// Limits bound handler outputs (size, nesting); zero means the defaults.
	Limits Limits
	// TracerProvider records a span per task attempt, a child of the span
	// that started the run (across processes). Nil (or the no-op provider)
	// records nothing and costs nothing. See "Observability" in the package
	// docs.
	TracerProvider trace.TracerProvider
	// MeterProvider records task counters, the task duration histogram,
	// lease expiries and the queue depth gauge. Nil (or the no-op provider)
	// records nothing.
	MeterProvider metric.MeterProvider
	// Optimize applies what the engine learned from earlier runs of the
	// worker's flows (Client.StepStats) at this level (default
	// OptimizeOff; see OptimizeLevel and "Learning and optimisation" in
	// the package docs). The worker tunes each flow when it starts and
	// every Learning.Interval: timeouts (basic) and hedging (aggressive)
	// apply to the handlers it runs; retries (basic) and claim priorities
	// (advanced) are written to the flow version for the tasks queued from
	// then on, whichever worker runs them. Give every worker of a flow
	// version the same level: a worker at OptimizeOff puts the version's
	// own retries and priorities back when it starts.
	Optimize OptimizeLevel
	// Learning tunes how statistics become step options, and how often
	// the worker tunes again; zero fields take the defaults.
	Learning LearnOptions
	// Retention, when set, makes the worker delete finished runs older than
	// Retention.OlderThan every Retention.Interval, as Client.Prune does.
	// Any number of workers may have it: one prunes at a time (an advisory
	// lock), the others skip their turn. Nil: no pruning (the default).
	Retention *RetentionOptions
}
