package runtime

import (
	"errors"
	"fmt"
	"time"
)

// MaxSnooze is the longest a task may snooze at a time: Snooze and
// SnoozeUntil beyond it return a permanent error instead.
const MaxSnooze = 366 * 24 * time.Hour

// SnoozeError is the error Snooze and SnoozeUntil return. A handler that
// returns it (or an error wrapping it) has its task queued again to run
// after the delay, without using an attempt: the next run of the handler
// sees the same Task.Attempt. Nothing is recorded as failed; the engine
// publishes task_snoozed. See Snooze.
type SnoozeError struct {
	// Delay is how long the task waits, counted from when the worker
	// records the snooze (for Snooze; zero or less: it runs again at once).
	Delay time.Duration
	// Until, when not zero, is the time the task waits for (SnoozeUntil);
	// Delay is then ignored.
	Until time.Time
}

// Error describes the snooze.
func (e *SnoozeError) Error() string {
	if !e.Until.IsZero() {
		return "qflow: snoozed until " + e.Until.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("qflow: snoozed for %s", max(e.Delay, 0))
}

// wait is how long the task is to wait from now: never negative.
func (e *SnoozeError) wait(now time.Time) time.Duration {
	if !e.Until.IsZero() {
		return max(e.Until.Sub(now), 0)
	}
	return max(e.Delay, 0)
}

// Snooze returns an error that, returned by a handler, makes its task run
// again after d without using an attempt (River's snooze): the task is
// queued again, visible to every worker only once d has passed. The time
// lives in the database (the task's visibility time), so stopping or
// restarting every worker neither loses nor shortens it, and no goroutine
// waits meanwhile. A task may snooze any number of times; each run of the
// handler has the same Task.Attempt. A d of zero or less runs the task
// again at once.
//
// d above MaxSnooze is a mistake: Snooze then returns a permanent error
// (see Permanent) that fails the task. A snooze does not move the run's
// deadline (RunOptions.Timeout, the flow's timeout=): a task snoozed past
// it never runs again, as upkeep cancels the run when the deadline passes.
//
// A snooze ends a chain run in process (WorkerOptions.ChainWindow): the
// snoozed step's task is queued with the delay like any other.
func Snooze(d time.Duration) error {
	if d > MaxSnooze {
		return Permanent(fmt.Errorf("qflow: snooze for %s: over the limit of %s (runtime.MaxSnooze)", d, MaxSnooze))
	}
	return &SnoozeError{Delay: d}
}

// SnoozeUntil is Snooze until t: the task runs again once t has passed
// (at once if t has passed already). It is a durable sleep: a handler that
// must not act before a time held in its input, say, returns
// SnoozeUntil(t) while time.Now() is before t, and acts when it runs
// again. The wait is computed with the worker's clock when the worker
// records it. A t more than MaxSnooze ahead returns a permanent error.
func SnoozeUntil(t time.Time) error {
	if t.IsZero() {
		return Permanent(errors.New("qflow: snooze until the zero time"))
	}
	if d := time.Until(t); d > MaxSnooze {
		return Permanent(fmt.Errorf("qflow: snooze until %s: %s ahead, over the limit of %s (runtime.MaxSnooze)",
			t.UTC().Format(time.RFC3339), d.Round(time.Second), MaxSnooze))
	}
	return &SnoozeError{Until: t}
}

// snoozed returns the snooze err holds, or nil.
func snoozed(err error) *SnoozeError {
	var s *SnoozeError
	if errors.As(err, &s) {
		return s
	}
	return nil
}
