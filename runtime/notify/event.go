package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// EventsChannel is the channel on which the engine publishes events.
const EventsChannel = "qflow_events"

// WorkChannel is the channel on which the engine announces new work; the
// payload is the queue name of the flow version that received tasks
// (<slug>_<version>). It is sent once per queue per transaction, and not at
// all when the transaction claimed every task it queued.
const WorkChannel = "qflow_work"

// EventType names a transition. See the package documentation for the
// fields each type carries.
type EventType string

// The event types the engine publishes.
const (
	WorkflowStarted   EventType = "workflow_started"
	WorkflowCompleted EventType = "workflow_completed"
	WorkflowFailed    EventType = "workflow_failed"
	WorkflowCancelled EventType = "workflow_cancelled"
	WorkflowResumed   EventType = "workflow_resumed"
	StepStarted       EventType = "step_started"
	StepCompleted     EventType = "step_completed"
	StepFailed        EventType = "step_failed"
	StepSkipped       EventType = "step_skipped"
	StepWaiting       EventType = "step_waiting"
	StepResumed       EventType = "step_resumed"
	TaskStarted       EventType = "task_started"
	TaskCompleted     EventType = "task_completed"
	TaskFailed        EventType = "task_failed"
	TaskSnoozed       EventType = "task_snoozed"
	// SubflowStarted: a subflow step (runtime.Subflow) started a child run.
	// RunID, Flow, Step, TaskIndex and Attempt are the parent's task;
	// ChildRunID and ChildFlow name the child.
	SubflowStarted EventType = "subflow_started"
)

// Terminal reports whether t ends a run: workflow_completed,
// workflow_failed or workflow_cancelled. A run publishes exactly one
// terminal event (when events are on), and one more after each
// workflow_resumed.
func (t EventType) Terminal() bool {
	return t == WorkflowCompleted || t == WorkflowFailed || t == WorkflowCancelled
}

// Event is one engine transition, decoded from a qflow_events payload.
// Fields that do not apply to the type are zero (and absent from the JSON).
type Event struct {
	// Type is the transition.
	Type EventType `json:"type"`
	// RunID is the run the transition belongs to.
	RunID uuid.UUID `json:"run_id"`
	// Flow is the flow's slug.
	Flow string `json:"flow"`
	// Step is the step's slug for step_* and task_* events, and the failed
	// step for workflow_failed; empty otherwise.
	Step string `json:"step,omitempty"`
	// TaskIndex is the task's index (the element index of a map step, 0
	// otherwise) for task_* events; nil otherwise.
	TaskIndex *int `json:"task_index,omitempty"`
	// Status is the status the run, step or task has after the transition.
	// For a task_failed that will be retried, and for task_snoozed, it is
	// "queued".
	Status string `json:"status,omitempty"`
	// Attempt is the task's attempt, 1 for the first try (task_* events).
	Attempt int `json:"attempt,omitempty"`
	// WillRetry reports, for task_failed, whether the task is queued again.
	WillRetry bool `json:"will_retry,omitempty"`
	// DurationMS is how long the attempt (task_completed, task_failed,
	// task_snoozed: the handler's run that snoozed), the
	// step (step_completed) or the run (workflow_completed, workflow_failed,
	// workflow_cancelled) took, in milliseconds; 0 for the other types.
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Error is the error of task_failed, step_failed and workflow_failed
	// (and of the step_skipped of an optional step that failed), and the
	// reason of workflow_cancelled. Long errors are cut (see
	// ErrorTruncated); the full text stays on the task and the step.
	Error string `json:"error,omitempty"`
	// ErrorTruncated reports that Error was cut to fit the payload limit; it
	// then ends with " …[truncated]".
	ErrorTruncated bool `json:"error_truncated,omitempty"`
	// Resume numbers a workflow_resumed: 1 for a run's first resume; 0 for
	// the other types.
	Resume int `json:"resume,omitempty"`
	// Until is, for task_snoozed, when the task becomes visible to workers
	// again, and for step_waiting, when the wait times out (server clock,
	// UTC); zero for the other types and a wait without timeout.
	Until time.Time `json:"until,omitzero"`
	// ChildRunID and ChildFlow are, for subflow_started, the child run the
	// parent's task started and its flow; zero for the other types. A
	// child's own events carry its own RunID; GetRun of either side shows
	// the link (runtime.Run.ParentRunID, Children).
	ChildRunID uuid.UUID `json:"child_run_id,omitzero"`
	ChildFlow  string    `json:"child_flow,omitempty"`
	// Time is when the transition happened (server clock, UTC).
	Time time.Time `json:"ts"`
}

// TaskIdx returns the task index, or -1 when the event is not about a task.
func (e Event) TaskIdx() int {
	if e.TaskIndex == nil {
		return -1
	}
	return *e.TaskIndex
}

// String is a short human-readable form, such as
// "task_failed etl/load[0] attempt 2 (will retry)".
func (e Event) String() string {
	s := string(e.Type) + " " + e.Flow
	if e.Step != "" {
		s += "/" + e.Step
	}
	if e.TaskIndex != nil {
		s += fmt.Sprintf("[%d]", *e.TaskIndex)
	}
	if e.Attempt > 0 {
		s += fmt.Sprintf(" attempt %d", e.Attempt)
	}
	if e.Type == TaskFailed && e.WillRetry {
		s += " (will retry)"
	}
	if e.Type == SubflowStarted {
		s += " child " + e.ChildFlow + " " + e.ChildRunID.String()
	}
	if (e.Type == TaskSnoozed || e.Type == StepWaiting) && !e.Until.IsZero() {
		s += " until " + e.Until.UTC().Format(time.RFC3339)
	}
	return s
}

// ErrNotEvent is wrapped by ParseEvent's error for a payload that is not an
// engine event.
var ErrNotEvent = errors.New("notify: not a qflow event")

// ParseEvent decodes a qflow_events payload. Unknown fields are ignored, so
// payloads from a newer engine still decode.
func ParseEvent(payload string) (Event, error) {
	var e Event
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrNotEvent, err)
	}
	if e.Type == "" || e.RunID == uuid.Nil {
		return Event{}, fmt.Errorf("%w: no type or run_id", ErrNotEvent)
	}
	return e, nil
}

// ParseEvents decodes a qflow_events payload into the events it carries:
// the engine publishes each transaction's events as one JSON array (split
// over several notifications when it would exceed the payload limit), and
// a payload holding a single event object is accepted too.
func ParseEvents(payload string) ([]Event, error) {
	return parseEvents(payload, nil)
}

// parseEvents is ParseEvents keeping only the events whose type keep
// accepts (all when keep is nil). A batch is decoded in one pass; with
// keep, each element's type is read first (from the engine's prefix
// {"type":"…", else by decoding that field alone), and only the events
// kept are decoded whole.
func parseEvents(payload string, keep func(EventType) bool) ([]Event, error) {
	s := strings.TrimLeft(payload, " \t\r\n")
	if !strings.HasPrefix(s, "[") {
		e, err := ParseEvent(payload)
		if err != nil {
			return nil, err
		}
		if keep != nil && !keep(e.Type) {
			return []Event{}, nil
		}
		return []Event{e}, nil
	}
	var evs []Event
	if keep == nil {
		if err := json.Unmarshal([]byte(s), &evs); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotEvent, err)
		}
		for _, e := range evs {
			if e.Type == "" || e.RunID == uuid.Nil {
				return nil, fmt.Errorf("%w: no type or run_id", ErrNotEvent)
			}
		}
	} else {
		elems, ok := splitArray(s)
		if !ok {
			return nil, fmt.Errorf("%w: not a JSON array of objects", ErrNotEvent)
		}
		for _, el := range elems {
			t, err := eventType(el)
			if err != nil {
				return nil, err
			}
			if !keep(t) {
				continue
			}
			e, err := ParseEvent(el)
			if err != nil {
				return nil, err
			}
			evs = append(evs, e)
		}
		if len(elems) == 0 {
			return nil, fmt.Errorf("%w: empty batch", ErrNotEvent)
		}
		if evs == nil {
			evs = []Event{}
		}
		return evs, nil
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("%w: empty batch", ErrNotEvent)
	}
	return evs, nil
}

// eventType reads the type of one encoded event: from the prefix the
// engine writes ({"type":"…"), else by decoding that field alone.
func eventType(el string) (EventType, error) {
	const prefix = `{"type":"`
	if rest, ok := strings.CutPrefix(el, prefix); ok {
		if t, _, ok := strings.Cut(rest, `"`); ok && strings.IndexByte(t, '\\') < 0 {
			return EventType(t), nil
		}
	}
	var e struct {
		Type EventType `json:"type"`
	}
	if err := json.Unmarshal([]byte(el), &e); err != nil || e.Type == "" {
		return "", fmt.Errorf("%w: no type", ErrNotEvent)
	}
	return e.Type, nil
}

// splitArray splits a JSON array of objects into its elements, without
// decoding them (each is checked when decoded). It reports false when s
// is not such an array: an element that is not an object, or brackets,
// braces or quotes that do not match.
func splitArray(s string) ([]string, bool) {
	s = strings.TrimRight(s, " \t\r\n")
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, false
	}
	var elems []string
	i, n := 1, len(s)-1
	for {
		for i < n && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
			i++
		}
		if i == n {
			return elems, len(elems) == 0 // "[]", or a trailing comma
		}
		if s[i] != '{' {
			return nil, false
		}
		start, depth := i, 0
		for ; i < n; i++ {
			switch s[i] {
			case '"':
				for i++; i < n && s[i] != '"'; i++ {
					if s[i] == '\\' {
						i++
					}
				}
				if i >= n {
					return nil, false
				}
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if depth != 0 || i >= n {
			return nil, false
		}
		i++
		elems = append(elems, s[start:i])
		for i < n && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
			i++
		}
		if i == n {
			return elems, true
		}
		if s[i] != ',' {
			return nil, false
		}
		i++
	}
}

// ForRun returns a predicate for Filter that keeps the events of one run.
func ForRun(id uuid.UUID) func(Event) bool {
	return func(e Event) bool { return e.RunID == id }
}

// ForFlow returns a predicate for Filter that keeps the events of the runs
// of one flow (by slug, every version).
func ForFlow(slug string) func(Event) bool {
	return func(e Event) bool { return e.Flow == slug }
}

// OfType returns a predicate for Filter that keeps events of the given types.
func OfType(types ...EventType) func(Event) bool {
	return func(e Event) bool {
		for _, t := range types {
			if e.Type == t {
				return true
			}
		}
		return false
	}
}
