// Package pgmq is a Go client for pgmq's SQL API: durable message queues
// that live in PostgreSQL tables.
//
// It works against the pgmq extension (1.10 or later) and against the
// pgmq-compatible SQL that QuantumFlow installs where the extension is not
// available (migrations/0001_pgmq.sql). Every query names its result columns
// and casts every parameter ($1::text, $2::integer, ...), so the same calls
// resolve to the same overloads on both.
//
// # pgmq versions
//
// Supported: the pgmq extension from MinVersion (1.10) on, pgmq's SQL-only
// installation of those releases, and QuantumFlow's own SQL. migrations.Migrate
// installs the extension only when the server offers 1.10 or later, and
// otherwise QuantumFlow's SQL, even when the server offers an older pgmq.
//
// A pgmq that was installed before, by a user or by another application,
// Migrate leaves alone whatever its version. If it is older than 1.10 (pgmq
// 1.5.1, for example, has no last_read_at column, no pop with a quantity, no
// batch SetVT and no insert notifications; 1.4 has no headers either), the
// calls that need the newer layout fail with an error wrapping
// ErrIncompatible, an *IncompatibleError that names the version, what is
// missing and the way out, instead of a bare "column does not exist"
// (SQLSTATE 42703) or "function does not exist" (42883). Calls that the old
// release can serve, such as Send without headers or Delete, still work.
// Check reports the same in one query, to fail fast at startup. The check
// costs nothing on calls that succeed: only after such an error does the
// call inspect the database, once, and not inside a transaction (the error
// has aborted it; the error then points at Check instead).
//
// The ways out, in the order we recommend them:
//
//   - update the extension: ALTER EXTENSION pgmq UPDATE, when the server
//     offers 1.10 or later (pgmq's update scripts migrate existing queues);
//   - or drop the old pgmq, DROP EXTENSION pgmq CASCADE (for an SQL-only
//     installation, DROP SCHEMA pgmq CASCADE), which deletes its queues and
//     messages, and run migrations.Migrate again: it installs the extension
//     if the server offers 1.10 or later, QuantumFlow's SQL otherwise.
//
// QuantumFlow's engine keeps its tasks in its own tables and does not need
// pgmq, so flows run whatever pgmq is installed. On a database without pgmq,
// calls and Check fail with an error wrapping ErrNotInstalled.
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
// Names follow pgmq's rules: 1 to 47 characters, none of $, ; and ' nor
// the sequence --; hyphens, upper case, spaces and dots are fine, since every
// identifier is quoted. ValidateQueueName checks it, and every function
// checks it before touching the database, so a hostile name never reaches
// SQL (the SQL side checks again, raising SQLSTATE P0001 as pgmq does). A
// queue's messages are in table pgmq.q_<name> and its archive in
// pgmq.a_<name>, lower-cased; see TableName and ArchiveTableName. Names
// that differ only in case would share those tables, so QuantumFlow's SQL
// refuses to create the second.
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
// wraps ErrQueueNotFound, an invalid name's ErrInvalidQueueName, a pgmq
// older than 1.10 ErrIncompatible, a database without pgmq ErrNotInstalled;
// database errors wrap the *pgconn.PgError.
//
// # The built-in implementation
//
// QuantumFlow's SQL implements pgmq 1.10's API, including partitioned queues
// (CreatePartitioned, ConvertArchivePartitioned; they need the pg_partman
// extension in the database) and FIFO groups (ReadGrouped, ReadGroupedRR).
// docs/pgmq.md lists its few deliberate differences, such as notifying once
// per inserting statement rather than once per row; docs/benchmarks.md has
// its throughput.
package pgmq
