package goals

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

// Event is one transition of a composed run, as published by the engine
// on runtime.EventsChannel, with the step slug mapped back to its task.
type Event struct {
	Type       string    `json:"type"` // workflow_started, step_started, task_started, task_completed, task_failed, step_completed, step_failed, step_skipped, workflow_completed, workflow_failed, workflow_cancelled
	RunID      uuid.UUID `json:"run_id"`
	Flow       string    `json:"flow"`
	Step       string    `json:"step,omitempty"`
	Task       string    `json:"task,omitempty"` // flattened task id of Step
	TaskIndex  int       `json:"task_index,omitempty"`
	Status     string    `json:"status,omitempty"`
	Attempt    int       `json:"attempt,omitempty"`
	DurationMS int64     `json:"duration_ms,omitempty"`
	Error      string    `json:"error,omitempty"`
	WillRetry  bool      `json:"will_retry,omitempty"`
	TS         time.Time `json:"ts"`
}

// Terminal reports whether the event ends its run.
func (e Event) Terminal() bool {
	switch e.Type {
	case "workflow_completed", "workflow_failed", "workflow_cancelled":
		return true
	}
	return false
}

// monitor delivers one run's events. It listens before the run starts, so
// events published while the run is being started are kept until the
// run's id is known.
type monitor struct {
	cancel context.CancelFunc
	runID  chan uuid.UUID
	done   chan struct{}
}

// startMonitor listens on the events channel for flow's events and hands
// those of the run (whose id comes later through setRun) to deliver.
func startMonitor(ctx context.Context, pool *pgxpool.Pool, plan *Plan, deliver func(context.Context, Event)) (*monitor, error) {
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	// A dedicated listening connection that reconnects by itself; a gap
	// only means some progress events may be missing (the run's outcome is
	// read from the database, not from events).
	l, err := notify.Listen(lctx, pool, nil, runtime.EventsChannel)
	if err != nil {
		cancel()
		return nil, err
	}
	m := &monitor{cancel: cancel, runID: make(chan uuid.UUID, 1), done: make(chan struct{})}
	events := make(chan Event, 1024)
	go func() { // reader
		defer close(events)
		defer l.Close()
		for msg := range l.C() {
			if msg.Event == nil || msg.Event.Flow != plan.Def.Slug {
				continue
			}
			ev := fromNotify(*msg.Event)
			if t := plan.bySlug[ev.Step]; t != nil {
				ev.Task = t.ID
			}
			select {
			case events <- ev:
			case <-lctx.Done():
				return
			}
		}
	}()
	go func() { // dispatcher
		defer close(m.done)
		var id uuid.UUID
		var pending []Event
		for {
			select {
			case id = <-m.runID:
				for _, ev := range pending {
					if ev.RunID == id {
						deliver(lctx, ev)
						if ev.Terminal() {
							return
						}
					}
				}
				pending = nil
			case ev, ok := <-events:
				if !ok {
					return
				}
				if id == uuid.Nil {
					pending = append(pending, ev)
					continue
				}
				if ev.RunID == id {
					deliver(lctx, ev)
					if ev.Terminal() {
						return
					}
				}
			}
		}
	}()
	return m, nil
}

// fromNotify converts an engine event.
func fromNotify(e notify.Event) Event {
	return Event{Type: string(e.Type), RunID: e.RunID, Flow: e.Flow, Step: e.Step, TaskIndex: max(e.TaskIdx(), 0),
		Status: e.Status, Attempt: e.Attempt, DurationMS: e.DurationMS, Error: e.Error, WillRetry: e.WillRetry, TS: e.Time}
}

func (m *monitor) setRun(id uuid.UUID) { m.runID <- id }

// stop waits up to grace for the run's terminal event to be delivered,
// then stops listening.
func (m *monitor) stop(grace time.Duration) {
	select {
	case <-m.done:
	case <-time.After(grace):
	}
	m.cancel()
	<-m.done
}
