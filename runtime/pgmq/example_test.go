package pgmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/quantumflow/qflow/runtime/pgmq"
)

// Example sends a message, reads it under a visibility timeout and archives
// it once handled. In real code pool is your *pgxpool.Pool; here the test
// harness provides a fresh database.
func Example() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	if err := pgmq.Create(ctx, pool, "emails"); err != nil {
		fmt.Println(err)
		return
	}
	id, err := pgmq.Send(ctx, pool, "emails", json.RawMessage(`{"to": "ada@example.com"}`),
		&pgmq.SendOpts{Headers: json.RawMessage(`{"trace": "abc"}`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("sent", id)

	// Claim up to 10 messages for 30 seconds; unhandled ones come back.
	msgs, err := pgmq.Read(ctx, pool, "emails", 30*time.Second, 10, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range msgs {
		fmt.Printf("read %d (read %d time): %s %s\n", m.ID, m.ReadCount, m.Message, m.Headers)
		if ok, err := pgmq.Archive(ctx, pool, "emails", m.ID); err != nil || !ok {
			fmt.Println("archive:", ok, err)
		}
	}

	m, err := pgmq.QueueMetrics(ctx, pool, "emails")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("queued", m.QueueLength, "ever sent", m.TotalMessages)

	_, err = pgmq.Send(ctx, pool, "a;drop table x", json.RawMessage(`{}`), nil)
	fmt.Println(err)
	// Output:
	// sent 1
	// read 1 (read 1 time): {"to": "ada@example.com"} {"trace": "abc"}
	// queued 0 ever sent 1
	// pgmq: invalid queue name "a;drop table x": contains $, ;, -- or '
}

// ExampleCheck fails fast at startup when the database's pgmq is one this
// package cannot use, instead of at the first Read. On a pgmq older than
// 1.10 the error is an *IncompatibleError naming the version, what is
// missing and the way out.
func ExampleCheck() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	err := pgmq.Check(ctx, pool)
	var old *pgmq.IncompatibleError
	switch {
	case errors.As(err, &old):
		fmt.Println("pgmq", old.Version, "is too old; missing:", old.Missing)
	case errors.Is(err, pgmq.ErrNotInstalled):
		fmt.Println("no pgmq: run migrations.Migrate")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println("pgmq is usable")
	}
	// Output:
	// pgmq is usable
}
