package notify

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestLogMessage(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	run := uuid.MustParse("11111111-2222-3333-4444-555555555555")
	two := 2
	LogMessage(ctx, logger, Message{Channel: EventsChannel, Event: &Event{
		Type: TaskFailed, RunID: run, Flow: "etl", Step: "parse", TaskIndex: &two,
		Status: "queued", Attempt: 1, WillRetry: true, DurationMS: 12, Error: "bad row",
	}})
	LogMessage(ctx, logger, Message{Channel: EventsChannel, Event: &Event{Type: WorkflowFailed, RunID: run, Flow: "etl", Error: "boom"}})
	LogMessage(ctx, logger, Message{Gap: true, Dropped: 3, Err: errors.New("conn reset")})
	LogMessage(ctx, logger, Message{Channel: "jobs", Payload: "hello"})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`level=WARN msg="qflow event" type=task_failed run_id=11111111-2222-3333-4444-555555555555 flow=etl step=parse task_index=2 status=queued attempt=1 will_retry=true duration_ms=12 error="bad row"`,
		`level=ERROR msg="qflow event" type=workflow_failed run_id=11111111-2222-3333-4444-555555555555 flow=etl error=boom`,
		`level=WARN msg="qflow notify: notifications may have been missed" dropped=3 error="conn reset"`,
		`level=DEBUG msg="qflow notification" channel=jobs payload=hello`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		// Drop the time= prefix the text handler adds.
		if _, rest, ok := strings.Cut(line, " "); ok {
			line = rest
		}
		if line != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, line, want[i])
		}
	}
}
