package notify

import (
	"context"
	"log/slog"
)

// Level is the log level LogEvent uses for e: Error for a failure that
// ends something (workflow_failed, step_failed, task_failed without
// retry), Warn for a failed attempt that will be retried, for
// workflow_cancelled and for the step_skipped of an optional step that
// failed, Debug for task_started and step_started, Info for the rest
// (workflow_resumed, task_snoozed and other step_skipped among them).
func (e Event) Level() slog.Level {
	switch e.Type {
	case WorkflowFailed, StepFailed:
		return slog.LevelError
	case TaskFailed:
		if e.WillRetry {
			return slog.LevelWarn
		}
		return slog.LevelError
	case WorkflowCancelled:
		return slog.LevelWarn
	case StepSkipped:
		if e.Error != "" {
			return slog.LevelWarn
		}
	case TaskStarted, StepStarted:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// Attrs returns e's fields as log attributes, leaving out those that do not
// apply to its type.
func (e Event) Attrs() []slog.Attr {
	a := make([]slog.Attr, 0, 12)
	a = append(a, slog.String("type", string(e.Type)), slog.String("run_id", e.RunID.String()), slog.String("flow", e.Flow))
	if e.Step != "" {
		a = append(a, slog.String("step", e.Step))
	}
	if e.TaskIndex != nil {
		a = append(a, slog.Int("task_index", *e.TaskIndex))
	}
	if e.Status != "" {
		a = append(a, slog.String("status", e.Status))
	}
	if e.Attempt > 0 {
		a = append(a, slog.Int("attempt", e.Attempt))
	}
	if e.Type == TaskFailed {
		a = append(a, slog.Bool("will_retry", e.WillRetry))
	}
	if e.DurationMS > 0 {
		a = append(a, slog.Int64("duration_ms", e.DurationMS))
	}
	if e.Error != "" {
		a = append(a, slog.String("error", e.Error))
	}
	if e.ErrorTruncated {
		a = append(a, slog.Bool("error_truncated", true))
	}
	if e.Resume > 0 {
		a = append(a, slog.Int("resume", e.Resume))
	}
	if !e.Until.IsZero() {
		a = append(a, slog.Time("until", e.Until))
	}
	if !e.Time.IsZero() {
		a = append(a, slog.Time("ts", e.Time))
	}
	return a
}

// LogValue makes an Event log as a group of its Attrs.
func (e Event) LogValue() slog.Value { return slog.GroupValue(e.Attrs()...) }

// LogEvent writes one line for e to logger (slog.Default() when nil), with
// the message "qflow event", e's Attrs, at e.Level().
func LogEvent(ctx context.Context, logger *slog.Logger, e Event) {
	if logger == nil {
		logger = slog.Default()
	}
	logger.LogAttrs(ctx, e.Level(), "qflow event", e.Attrs()...)
}

// LogMessage writes one line for m: LogEvent for an event, a warning for a
// gap, and a debug line with channel and payload for any other notification.
func LogMessage(ctx context.Context, logger *slog.Logger, m Message) {
	if logger == nil {
		logger = slog.Default()
	}
	switch {
	case m.Gap:
		logger.LogAttrs(ctx, slog.LevelWarn, "qflow notify: notifications may have been missed",
			slog.Int("dropped", m.Dropped), slog.Any("error", m.Err))
	case m.Event != nil:
		LogEvent(ctx, logger, *m.Event)
	default:
		logger.LogAttrs(ctx, slog.LevelDebug, "qflow notification", slog.String("channel", m.Channel), slog.String("payload", m.Payload))
	}
}

// Filter passes on the event messages of in for which keep returns true,
// and every gap (so the consumer still learns that it may have missed
// something); it drops the rest. The returned channel is closed when in is
// closed or ctx ends. keep nil keeps every event.
func Filter(ctx context.Context, in <-chan Message, keep func(Event) bool) <-chan Message {
	out := make(chan Message, cap(in))
	go func() {
		defer close(out)
		for {
			var m Message
			var ok bool
			select {
			case <-ctx.Done():
				return
			case m, ok = <-in:
				if !ok {
					return
				}
			}
			if !m.Gap && (m.Event == nil || (keep != nil && !keep(*m.Event))) {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case out <- m:
			}
		}
	}()
	return out
}
