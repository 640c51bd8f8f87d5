// Package migrations holds QuantumFlow's database schema as embedded,
// versioned SQL files and the small migrator that applies them.
//
// # Files
//
// Each file is named NNNN_name.sql and applied once, in version order, inside
// one transaction guarded by an advisory lock; applied versions are recorded in
// qflow.schema_migrations. 0001_pgmq.sql is our pgmq-compatible queue API
// (see below for when the real pgmq extension is used instead).
//
// # pgmq
//
// runtime/pgmq and notify.SendWithNotify use pgmq's SQL API with the layout
// of pgmq 1.10 (MinPgmqVersion). When migration 0001 is applied:
//
//   - a pgmq that is already installed, the extension at any version or
//     pgmq's SQL-only installation, is left alone: Migrate never upgrades,
//     downgrades or drops it, since other applications may use it. If it
//     is older than 1.10, Migrate still succeeds (the engine does not use
//     pgmq) and the runtime/pgmq calls that need the newer layout return an
//     error wrapping pgmq.ErrIncompatible that names the version and the way
//     out; pgmq.Check reports it up front;
//   - else, when the server offers the extension at 1.10 or later, it is
//     created (its default version, or the newest offered one that is
//     recent enough);
//   - else, including when the server offers only an older pgmq,
//     0001_pgmq.sql is run.
//
// A later Migrate that finds no pgmq at all (after DROP EXTENSION pgmq
// CASCADE or DROP SCHEMA pgmq CASCADE) installs one again by the same
// rules. docs/pgmq.md has the ways out of an old pgmq.
//
// # Use
//
//	if err := migrations.Migrate(ctx, pool); err != nil { ... }
//
// MigrateTx does the same inside the caller's transaction.
package migrations
