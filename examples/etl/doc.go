// Command etl runs QuantumFlow's example ETL flow (package
// github.com/quantumflow/qflow/examples/etl/etl) on PostgreSQL with
// in-process workers, shows its progress and prints a summary:
//
//	go run ./examples/etl
//
// It uses the database named by DATABASE_URL, else database qflow_example
// (created when missing) on the local server at 127.0.0.1:5432, else on a
// throwaway cluster started from the locally installed PostgreSQL binaries
// and removed on exit (see internal/localpg).
// It migrates the database, listens to the run's events (runtime/notify)
// to show steps and map tasks as they complete, loads the CSV
// shipped with the example (or the one named by -source) and replaces what
// an earlier run loaded from the same source, so it can run any number of
// times.
//
// Flags:
//
//	-source PATH      CSV to load (default: the embedded sales.csv)
//	-concurrency N    tasks the in-process worker runs at once (default 64)
//	-v                log every task transition to standard error
package main
