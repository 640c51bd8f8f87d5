// Package migrations holds QuantumFlow's database schema as embedded,
// versioned SQL files and the small migrator that applies them.
//
// # Files
//
// Each file is named NNNN_name.sql and applied once, in version order, inside
// one transaction guarded by an advisory lock; applied versions are recorded in
// qflow.schema_migrations. 0001_pgmq.sql is our pgmq-compatible queue API; when
// the server offers the real pgmq extension it is installed instead.
//
// # Use
//
//	if err := migrations.Migrate(ctx, pool); err != nil { ... }
//
// MigrateTx does the same inside the caller's transaction.
package migrations
