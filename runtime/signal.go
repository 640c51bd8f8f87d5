package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/quantumflow/qflow/flowdef"
)

// SignalKey is the key of a waiting step's task input that holds its
// signal's payload (StepDef.Wait; see flowdef.SignalKey).
const SignalKey = flowdef.SignalKey

// Errors of Client.Signal, with nothing changed (an unknown run gives
// ErrRunNotFound).
var (
	// ErrRunFinished: the run has completed, failed or been cancelled, so
	// it takes no signal.
	ErrRunFinished = errors.New("qflow: run has finished")
	// ErrUnknownSignal: no step of the run's flow version waits for a
	// signal of this name.
	ErrUnknownSignal = errors.New("qflow: unknown signal")
	// ErrSignalSent: the run has received a signal of this name already; a
	// signal is delivered once and never overwritten.
	ErrSignalSent = errors.New("qflow: signal already sent")
)

const sqlSignal = `SELECT qflow.signal($1::uuid, $2::text, $3::jsonb)`

// Signal delivers the signal name, with payload encoded as JSON, to run
// runID: the steps of the run that wait for it (StepDef.Wait) start, with
// the payload in their task input under SignalKey. A signal sent before
// the run reaches its step is kept, and the step starts as soon as its
// dependencies are done. The signal is stored in the database with the
// run locked, so no worker needs to be running.
//
// Errors, with nothing changed: ErrRunNotFound for an unknown run,
// ErrRunFinished for a run that has finished, ErrUnknownSignal when no
// step of the run's flow version waits for name, ErrSignalSent when the
// run already has this signal, ErrBadInput for a payload that does not
// encode as JSON. The dynamic API checks only that the payload is JSON;
// generated Signal<Flow><Name> functions take the declared payload type.
func (c *Client) Signal(ctx context.Context, runID uuid.UUID, name string, payload any) error {
	if !flowdef.ValidSlug(name) {
		return fmt.Errorf("%w: %q (a signal name must match %s)", ErrUnknownSignal, name, flowdef.SlugPattern)
	}
	var raw []byte
	switch p := payload.(type) {
	case json.RawMessage:
		if !json.Valid(p) {
			return fmt.Errorf("%w: signal %q: payload is not valid JSON", ErrBadInput, name)
		}
		raw = p
	default:
		b, err := json.Marshal(payload)
		if err != nil {
			return fmt.Errorf("%w: signal %q: encode payload: %v", ErrBadInput, name, err)
		}
		raw = b
	}
	var outcome string
	for attempt := 1; ; attempt++ {
		err := c.pool.QueryRow(ctx, sqlSignal, runID, name, raw).Scan(&outcome)
		if err == nil {
			break
		}
		var pgErr *pgconn.PgError
		if attempt < 5 && errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") {
			continue
		}
		return mapError(fmt.Errorf("qflow: signal %q to run %s: %w", name, runID, err))
	}
	switch outcome {
	case "unknown_run":
		return fmt.Errorf("%w: %s", ErrRunNotFound, runID)
	case "finished":
		return fmt.Errorf("%w: run %s cannot take signal %q", ErrRunFinished, runID, name)
	case "unknown_signal":
		return fmt.Errorf("%w: no step of run %s waits for signal %q", ErrUnknownSignal, runID, name)
	case "duplicate":
		return fmt.Errorf("%w: run %s has signal %q already", ErrSignalSent, runID, name)
	}
	c.log.Info("qflow signal delivered", "run_id", runID, "signal", name, "resumed", outcome == "resumed")
	return nil
}
