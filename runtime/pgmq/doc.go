// Package pgmq is a Go client for pgmq's SQL API: durable message queues
// that live in PostgreSQL tables.
//
// It works against the pgmq extension (1.10 or later) and against the
// pgmq-compatible SQL that QuantumFlow installs where the extension is not
// available (migrations/0001_pgmq.sql). Every query names its result columns
// and casts every parameter ($1::text, $2::integer, ...), so the same calls
// resolve to the same overloads on both.
//
// # Running calls
//
// Every function takes a DBTX: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
// Pass a transaction to make queue operations part of it, for example to
// send a message only if the rest of the transaction commits, or to delete a
// message in the same transaction that records its result:
//
//	tx, _ := pool.Begin(ctx)
//	id, err := pgmq.Send(ctx, tx, "emails", json.RawMessage(`{"to":"a@example.com"}`), nil)
//	...
//	err = tx.Commit(ctx)
//
// # Queue names
//
// A queue name is 1 to 47 ASCII letters, digits and underscores.
// ValidateQueueName checks it, and every function checks it before touching
// the database, so a hostile name never reaches SQL (the SQL side checks
// again). A queue's messages are in table pgmq.q_<name> and its archive in
// pgmq.a_<name>, lower-cased; see TableName and ArchiveTableName.
//
// # Delivery
//
// Read claims visible messages and hides them for a visibility timeout (vt);
// the caller then Deletes or Archives each one. A message that is not
// deleted or archived in time becomes visible again and is read again, with
// ReadCount one higher: at-least-once delivery. Concurrent readers skip
// rows another reader has locked, so they never receive the same visible
// message. Pop reads and deletes in one step: at-most-once delivery.
// Visibility uses the server's clock (clock_timestamp()), not the client's.
//
// ReadWithPoll waits on the server for a message to arrive.
// EnableNotifyInsert makes inserts send a NOTIFY on NotifyChannel(queue);
// notifications are hints (throttled, lost while nobody listens), so keep
// polling as a fallback.
//
// # Durations
//
// pgmq takes visibility timeouts and delays as whole seconds; Durations
// passed to this package are rounded up, so nothing becomes visible earlier
// than asked. SendOpts.VisibleAt gives an exact instant instead.
//
// # Errors
//
// Errors say which operation and queue failed. An unknown queue's error
// wraps ErrQueueNotFound, an invalid name's ErrInvalidQueueName; database
// errors wrap the *pgconn.PgError.
//
// # Differences of the built-in implementation
//
// QuantumFlow's SQL does not support partitioned queues (CreatePartitioned
// always fails), rejects queue names the extension would accept but that
// are not plain identifiers, and notifies once per inserting statement
// rather than once per row. docs/benchmarks.md has its throughput.
package pgmq
