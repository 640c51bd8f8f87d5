// Package notify publishes and receives QuantumFlow events over PostgreSQL
// LISTEN/NOTIFY: typed events for every run, step and task transition, a
// listener that reconnects, and helpers to send a pgmq message together
// with a notification.
//
// # Events
//
// The engine publishes an event for every transition on EventsChannel
// ("qflow_events") with pg_notify, inside the transaction that makes the
// transition. Events are therefore delivered only if that transaction
// commits, and in commit order; a rolled-back transition publishes nothing.
// A transaction's events travel together, as few notifications as fit (see
// Payload); Listener delivers them one Event at a time, in order.
// The types are:
//
//	workflow_started    a run started (one per run)
//	step_started        a step became ready and its tasks were queued
//	task_started        a worker claimed a task (one per attempt)
//	task_completed      an attempt succeeded
//	task_failed         an attempt failed; will_retry says whether it is queued again
//	task_snoozed        the handler snoozed (runtime.Snooze): the task is queued again, visible
//	                    from until, and its next task_started has the same attempt
//	subflow_started     a subflow step (runtime.Subflow) started a child run: run_id, step,
//	                    task_index and attempt are the parent task's; child_run_id and
//	                    child_flow name the child, whose own events follow under its id
//	step_completed      every task of a step completed (an empty map completes at once)
//	step_failed         a task ran out of attempts (or failed permanently)
//	step_skipped        a step was skipped: its condition was false (after its task_started;
//	                    no task_completed follows), a dependency whose skip it does not take
//	                    was skipped (it never started), or it is an optional step that failed
//	                    (after its last task_failed; error holds the failure). Its dependents'
//	                    step_skipped follow in the same transaction
//	step_waiting        a step that waits for a signal (StepDef.Wait) is ready but its run has
//	                    not received the signal: no task is queued; until is when the wait
//	                    times out (absent: never)
//	step_resumed        the signal a waiting step waited for arrived (Client.Signal); the
//	                    step's step_started follows in the same transaction
//	workflow_completed  every step completed or was skipped
//	workflow_failed     a step failed; follows its step_failed
//	workflow_cancelled  the run was cancelled (CancelRun or its timeout)
//	workflow_resumed    a failed or cancelled run was resumed (ResumeRun); step_started
//	                    follows for each step it queued again
//
// A run publishes exactly one of workflow_completed, workflow_failed and
// workflow_cancelled, last; a resumed run starts again with
// workflow_resumed and publishes one more terminal event when it ends
// again. Steps and tasks that a failure or cancellation cancels publish
// nothing; nor do the other tasks of an optional map step, cancelled when
// one of them fails for good. A step publishes at most one of
// step_completed, step_failed and step_skipped (per resume), and an
// optional step's failure publishes step_skipped, never step_failed: the
// run goes on.
//
// # Payload
//
// The payload is a JSON array of events, in the order of the transitions;
// a transaction with more events than fit in one notification sends several,
// each under 7,900 bytes. ParseEvents decodes a payload (and also accepts a
// single event object). Each event is a JSON object; a field that does not
// apply is absent. Field by field (Event has one Go field per JSON field):
//
//	type             string   the event type (always)
//	run_id           string   the run's UUID (always)
//	flow             string   the flow's slug (always)
//	step             string   the step's slug: step_* and task_*; the failed step on workflow_failed
//	task_index       integer  the task's index, 0 unless the step is a map: task_*
//	status           string   the status after the transition: "started" (also workflow_resumed
//	                          and step_resumed), "waiting" (step_waiting),
//	                          "completed", "failed", "cancelled", "skipped" (step_skipped), or
//	                          "queued" for a task_failed that will retry and for task_snoozed
//	attempt          integer  the attempt, 1 for the first try: task_*
//	will_retry       boolean  task_failed only: true when the task is queued again
//	duration_ms      integer  milliseconds the attempt (task_completed, task_failed, task_snoozed), the step
//	                          (step_completed) or the run (workflow_completed/failed/cancelled) took
//	error            string   the error: task_failed, step_failed, workflow_failed, and the
//	                          step_skipped of an optional step that failed; the reason:
//	                          workflow_cancelled
//	error_truncated  boolean  present (true) when error was cut
//	resume           integer  workflow_resumed only: the run's resume count, 1 for the first
//	until            string   task_snoozed: when the task becomes visible again (as ts);
//	                          step_waiting: when the wait times out
//	child_run_id     string   subflow_started only: the child run's UUID
//	child_flow       string   subflow_started only: the child run's flow slug
//	ts               string   when the transition happened: RFC 3339, UTC, microseconds
//	                          (the server's clock; the events one statement of the engine
//	                          publishes together share one reading)
//
// A payload never exceeds NOTIFY's limit (MaxPayloadBytes), and one event
// stays far below it: slugs are short, outputs and inputs are never inlined
// (read them from the run), and an error whose JSON encoding is over 4000
// bytes is cut to its first 600 characters followed by " …[truncated]",
// with error_truncated set. The full error is stored on the task and the
// step.
//
// New fields may be added; existing ones keep their names and meaning.
//
// # Switching events off
//
// Events can be turned off per client (runtime.ClientOptions.DisableEvents:
// the runs it starts publish nothing at all) and per worker
// (runtime.WorkerOptions.DisableEvents: the worker's connections set
// qflow.events = 'off', so the transitions it makes publish nothing). Any
// session can do the same with SET qflow.events = 'off'. Waiting for runs
// keeps working without events: waiters fall back to re-checking the run.
//
// # Listening
//
// Listen opens a dedicated connection, LISTENs on the given channels and
// delivers a Message per notification on Listener.C, with the engine's
// events decoded into Message.Event. When the connection drops, the
// listener reconnects with exponential backoff and then delivers a gap
// (Message.Gap): notifications sent while it was away are lost, so a
// consumer that tracks state should re-read it. A consumer that falls
// behind does not hold up the connection: once the buffer is full,
// notifications are dropped and a gap with the number dropped is delivered.
// Close (or ending Listen's context) stops the listener and closes the
// connection, which ends its LISTENs.
//
// Filter, with the predicates ForRun, ForFlow and OfType, narrows a
// listener's messages to the events of interest (gaps always pass).
// ListenOptions.Types narrows them earlier and for less: events of other
// types are not even decoded (WaitRun's shared listener keeps only the
// terminal ones, a fifteenth of a chain's events).
// LogEvent and LogMessage write events as structured log/slog lines.
//
// # Sending
//
// NotifyOnly sends a notification on any channel. SendWithNotify sends a
// pgmq message and a notification on the queue's channel (QueueChannel:
// pgmq's own insert channel, with the message id as payload) in one
// transaction, so a consumer listening there wakes only for messages that
// were committed. Channel names are validated (ValidateChannel) and
// payloads parameterised; NOTIFY is a hint, so consumers should still poll
// as a fallback.
//
// # Work notifications
//
// The engine also notifies WorkChannel ("qflow_work") with the flow
// version's queue name (<slug>_<version>) when a transaction queues tasks
// that it does not claim itself. Idle workers listen there and claim at once
// instead of waiting for their poll interval.
package notify
