// Command optimize measures what each optimisation level
// (runtime.WorkerOptions.Optimize: basic, advanced, aggressive) does to
// three generated flows (package flows), the counterparts of the
// runtime/goals measurement, on a fresh database:
//
//	go run ./examples/optimize                      # about 3 minutes
//	go run ./examples/optimize -scale 0.2 -runs 3   # shorter steps
//
// For each flow it first makes learning runs at level off (the engine
// records every run's step statistics), then measures runs with a worker
// at each level, and prints the run times (the engine's finished_at −
// started_at) per level:
//
//   - critical: with 2 slots, first-in-first-out claims take the 12 side
//     tasks before the chain that decides the run's length; advanced
//     claims the chain first.
//   - hang: the first attempt of a step hangs; off waits for the step's
//     configured timeout (10s), basic for the one it learned (1s, the
//     floor) before retrying.
//   - stragglers: 1 in 7 idempotent calls is 30× slower; aggressive starts
//     a second copy of a call that has run twice its median, and the
//     first to finish wins.
//
// The same measurement as a Go benchmark, one result per scenario and
// level (ms/run is the median run time):
//
//	go test ./examples/optimize -run '^$' -bench . -benchtime 5x
//	go test ./examples/optimize -run '^$' -bench . -benchtime 1x -scale 0.1   # a quick check
//
// Flags:
//
//	-scale F           multiply every step duration by F (default 1)
//	-runs N            measured runs per scenario and level (default 5)
//	-scenarios LIST    critical, hang, stragglers (default all)
//	-levels LIST       off, basic, advanced, aggressive (default all that apply)
//
// It uses a fresh database on the server named by DATABASE_URL, else on
// the local server at 127.0.0.1:5432, else on a throwaway cluster, and
// drops it on exit: statistics learned by one invocation would otherwise
// tune the next one's level-off runs.
package main
