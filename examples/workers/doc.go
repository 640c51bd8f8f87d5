// Command workers shows several worker processes sharing one queue: it
// starts N copies of itself as workers on the same database, starts a run
// whose map step has many tasks, and reports which process ran how many.
//
//	go run ./examples/workers -n 3 -items 300
//
// The database is found as for examples/etl: DATABASE_URL, else database
// qflow_example on the local server at 127.0.0.1:5432, else on a throwaway
// cluster (internal/localpg); the worker processes inherit its URL. Worker processes run until their
// standard input closes, so they never outlive the parent. Any process on
// any machine that registers the same flow could join in the same way.
//
// Flags:
//
//	-n N            worker processes (default 3)
//	-items N        tasks of the map step (default 300)
//	-work DUR       time each task pretends to work (default 10ms)
//	-concurrency N  tasks each worker runs at once (default 4)
package main
