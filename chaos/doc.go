// Package chaos holds the reliability suite: real worker processes,
// SIGKILLed, cut off by pg_terminate_backend, or left running while
// PostgreSQL restarts underneath them, each scenario on its own throwaway
// cluster (internal/localpg) so nothing else is disturbed.
//
// The tests carry the build tag "chaos"; .ci/run runs them with
//
//	go test -tags chaos -count=1 ./chaos/
//
// Worker processes are this package's test binary re-executed with
// CHAOS_CHILD=worker: a qflow worker whose handler records every execution
// in the table chaos_exec through its own connection before doing its
// work. A trigger records every transition of a task or run to completed,
// so a task completed twice would show. Each scenario logs one line of
// numbers (runs, lost, completed twice, extra executions, recovery time);
// docs/reliability.md collects them.
//
// BenchmarkOldSnapshot measures throughput and dead rows before, during and
// after a session holds an old snapshot for a minute (not run by CI):
//
//	go test -tags chaos -run '^$' -bench OldSnapshot -benchtime 1x ./chaos/
package chaos
