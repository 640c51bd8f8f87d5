// Qflow is the operator's command for QuantumFlow: it migrates the schema,
// lists flows, runs, schedules, workers and queues, shows why a run failed, cancels
// runs, tails live events and serves the web dashboard.
//
// Usage:
//
//	qflow <command> [flags] [arguments]
//
// The commands are:
//
//	migrate         apply the embedded schema migrations (--status: list applied and pending)
//	flows           list stored flows and their versions
//	flows show F    print a flow's steps, their options and its Mermaid diagram
//	flows stats F   print the statistics the engine learned for a flow's steps
//	runs            list runs, newest first (--flow, --status, --since, --limit, --after)
//	runs show ID    print a run's steps with states, attempts, durations, errors and outputs
//	cancel ID       cancel a run (also: runs cancel ID)
//	resume ID       resume a failed or cancelled run (also: runs resume ID)
//	prune           delete finished runs older than a duration, with their steps and tasks
//	check           list rows of runs, steps and tasks that break the engine's rules (exit 1 if any)
//	schedules       list cron schedules: flow, spec, time zone, next and last tick (--flow)
//	schedules set N create or update a cron schedule (--flow, --cron, --tz, --input, --missed)
//	schedules pause N, schedules resume N, schedules delete N
//	workers         list live workers (--all: also stopped ones) with their queues and held tasks
//	queues          list the backlog of each flow version: queued, running, oldest wait
//	events          print live events as they happen (--flow, --run, --count)
//	serve           serve the web dashboard (see package dashboard)
//	help [command]  print help
//
// Every command takes --database-url; without it, DATABASE_URL names the
// server. Every listing takes --json, which prints JSON instead of a table.
//
// Exit status, as with the go command: 0 on success, 1 on an error (printed
// on standard error as "qflow <command>: message"), 2 on a usage error.
package main
