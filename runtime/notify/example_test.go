package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/quantumflow/qflow/runtime/notify"
	"github.com/quantumflow/qflow/runtime/pgmq"
)

// Example listens on a queue's channel, sends a message together with its
// notification in one transaction, and handles the notification. In real
// code pool is your *pgxpool.Pool; here the test harness provides a fresh
// database.
func Example() {
	pool, done := exampleDatabase()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := pgmq.Create(ctx, pool, "emails"); err != nil {
		fmt.Println(err)
		return
	}
	channel, _ := notify.QueueChannel("emails")
	l, err := notify.Listen(ctx, pool, nil, channel)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()

	id, err := notify.SendWithNotify(ctx, pool, "emails", json.RawMessage(`{"to": "ada@example.com"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("sent message", id)

	m := <-l.C()
	fmt.Printf("woken on %s for message %s\n", m.Channel, m.Payload)
	// Output:
	// sent message 1
	// woken on pgmq.q_emails.INSERT for message 1
}

// ExampleFilter decodes an engine event and keeps only one run's events.
func ExampleFilter() {
	in := make(chan notify.Message, 2)
	for _, p := range []string{
		`{"type":"task_failed","run_id":"5d1c7a64-3b8e-4a57-9a57-3f0a6cf7a001","flow":"etl","step":"load","task_index":0,"status":"queued","attempt":1,"will_retry":true,"duration_ms":12,"error":"connection reset","ts":"2026-11-26T14:23:00.123456Z"}`,
		`{"type":"workflow_started","run_id":"00000000-0000-0000-0000-00000000beef","flow":"etl","status":"started","ts":"2026-11-26T14:23:00.2Z"}`,
	} {
		e, err := notify.ParseEvent(p)
		if err != nil {
			fmt.Println(err)
			return
		}
		in <- notify.Message{Channel: notify.EventsChannel, Payload: p, Event: &e}
	}
	close(in)
	first, _ := notify.ParseEvent(`{"type":"workflow_started","run_id":"5d1c7a64-3b8e-4a57-9a57-3f0a6cf7a001","flow":"etl"}`)
	for m := range notify.Filter(context.Background(), in, notify.ForRun(first.RunID)) {
		fmt.Println(m.Event, "-", m.Event.Error)
	}
	// Output:
	// task_failed etl/load[0] attempt 1 (will retry) - connection reset
}
