// Command peers compares QuantumFlow with two peers that also keep their
// state in PostgreSQL, River (a job queue) and DBOS Transact (durable
// workflows), on the same workloads and the same server, next to that
// server's own floor (pgbench). It is a module of its own so that the peers'
// dependencies never reach users of the library.
//
// Workloads (see README.md for how each peer implements them):
//
//	w0   pgbench -N: 8 clients (TPS, the floor for throughput) and 1 client (commit latency)
//	w1   2,000 runs of a 3-step chain a→b→c, started one per call from 8 goroutines
//	w1b  the same 2,000 chains started in one call (qflow StartRuns, River InsertMany)
//	w2   200 chains one after the other (start, wait, next) after 5 warm-ups: p50/p95/p99
//	w3   one run: a step returns 10,000 items, one task per item, an aggregate step
//
// Every peer runs with the same number of execution slots (-slots) and the same
// connection pool size (-poolmax). Every repetition runs in a database of its
// own (bench_<peer>_<pid>), created and dropped here, on the server named by
// DATABASE_URL (default postgres://root@127.0.0.1:5432/postgres); -pghost,
// -pgport and -pguser override its parts.
//
// Usage:
//
//	go run . [-reps 3] [-slots 8] [-peer qflow,river,dbos,pgbench] [-workload w0,w1,w1b,w2,w3] [-variant ...]
//
// It logs one line per measurement on stderr, appends each as a JSON line to
// -out (default results.jsonl), and prints a markdown table of medians with
// ratios on stdout. Exit status 0 when every measurement succeeded, 1 when one
// failed (the others still run), 2 on a usage error.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"
)

// benchCase is one (peer, workload, variant) the harness knows how to run.
type benchCase struct {
	peer, workload, variant string
	// optIn cases run only when their variant is named in -variant.
	optIn bool
	run   func(ctx context.Context, c *config, rep int) (Result, error)
}

// cases lists every measurement in the order of the table.
var cases = []benchCase{
	{peer: "pgbench", workload: "w0", variant: "c8", run: pgbenchCase(8)},
	{peer: "pgbench", workload: "w0", variant: "c1", run: pgbenchCase(1)},

	{peer: "qflow", workload: "w1", variant: "events", run: qflowW1(false, true)},
	{peer: "qflow", workload: "w1", variant: "noevents", optIn: true, run: qflowW1(false, false)},
	{peer: "qflow", workload: "w1b", variant: "events", run: qflowW1(true, true)},
	{peer: "qflow", workload: "w1b", variant: "noevents", optIn: true, run: qflowW1(true, false)},
	{peer: "qflow", workload: "w2", variant: "events", run: qflowW2(true)},
	{peer: "qflow", workload: "w2", variant: "noevents", optIn: true, run: qflowW2(false)},
	{peer: "qflow", workload: "w3", variant: "events", run: qflowW3(true)},
	{peer: "qflow", workload: "w3", variant: "noevents", optIn: true, run: qflowW3(false)},

	{peer: "river", workload: "w1", variant: "insert", run: riverW1(false)},
	{peer: "river", workload: "w1b", variant: "insertmany", run: riverW1(true)},
	{peer: "river", workload: "w2", variant: "insert", run: riverW2},
	{peer: "river", workload: "w3", variant: "txcounter", run: riverW3(false)},
	{peer: "river", workload: "w3", variant: "asynccompleter", run: riverW3(true)},

	{peer: "dbos", workload: "w1", variant: "direct", run: dbosW1(false)},
	{peer: "dbos", workload: "w1", variant: "queue", run: dbosW1(true)},
	{peer: "dbos", workload: "w2", variant: "direct", run: dbosW2(false)},
	{peer: "dbos", workload: "w2", variant: "queue", run: dbosW2(true)},
	{peer: "dbos", workload: "w3", variant: "queue", run: dbosW3("queue")},
	{peer: "dbos", workload: "w3", variant: "steps", run: dbosW3("steps")},
}

// starters is the number of goroutines that start W1's runs, for every peer
// and independent of -slots, as in cmd/qflowbench.
const starters = 8

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "peers:", err)
		}
		return 2
	}
	log.SetOutput(stderr)
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	selected := c.selectCases()
	if len(selected) == 0 {
		fmt.Fprintln(stderr, "peers: no case matches -peer, -workload and -variant")
		return 2
	}
	var notes []string
	if slices.ContainsFunc(selected, func(bc benchCase) bool { return bc.peer == "pgbench" }) {
		if c.pgbench, err = findPgbench(c.pgbenchFlag); err != nil {
			note := fmt.Sprintf("w0 skipped: %v", err)
			log.Print(note)
			notes = append(notes, note)
			selected = slices.DeleteFunc(selected, func(bc benchCase) bool { return bc.peer == "pgbench" })
		}
	}
	header, err := c.describe(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "peers:", err)
		return 1
	}
	out, err := os.OpenFile(c.out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(stderr, "peers:", err)
		return 1
	}
	defer out.Close()

	// Repetitions are the outer loop so that drift on a shared machine
	// spreads over every case instead of landing on one.
	var results []Result
	failed := false
	for rep := 1; rep <= c.reps && ctx.Err() == nil; rep++ {
		for _, bc := range selected {
			if ctx.Err() != nil {
				break
			}
			r, err := c.runCase(ctx, bc, rep)
			if err != nil {
				failed = true
				note := fmt.Sprintf("%s %s %s rep %d failed: %v", bc.peer, bc.workload, bc.variant, rep, err)
				log.Print(note)
				notes = append(notes, note)
				continue
			}
			logResult(stderr, r)
			if err := writeJSON(out, r); err != nil {
				fmt.Fprintln(stderr, "peers:", err)
				return 1
			}
			results = append(results, r)
		}
	}
	if ctx.Err() != nil {
		notes = append(notes, "interrupted: the table holds the repetitions that finished")
		failed = true
	}
	writeTable(stdout, header, summarize(results, selected), notes)
	if failed {
		return 1
	}
	return 0
}

// runCase runs one repetition of a case under the -timeout and fills in the
// fields every result shares.
func (c *config) runCase(ctx context.Context, bc benchCase, rep int) (Result, error) {
	log.Printf("run %s %s %s rep %d", bc.peer, bc.workload, bc.variant, rep)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.checkpoint(ctx); err != nil {
		return Result{}, err
	}
	r, err := bc.run(ctx, c, rep)
	if err != nil {
		return Result{}, err
	}
	r.Peer, r.Workload, r.Variant, r.Rep = bc.peer, bc.workload, bc.variant, rep
	r.Slots, r.PoolMax = c.slots, c.poolMax
	r.When = time.Now().UTC()
	return r, nil
}

// selectCases returns the cases the -peer, -workload and -variant filters keep.
func (c *config) selectCases() []benchCase {
	var out []benchCase
	for _, bc := range cases {
		if len(c.peers) > 0 && !slices.Contains(c.peers, bc.peer) {
			continue
		}
		if len(c.workloads) > 0 && !slices.Contains(c.workloads, bc.workload) {
			continue
		}
		if len(c.variants) > 0 {
			if !slices.Contains(c.variants, bc.variant) {
				continue
			}
		} else if bc.optIn {
			continue
		}
		out = append(out, bc)
	}
	return out
}

// splitList splits a comma list, dropping blanks; "all" or "" means no filter.
func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" && f != "all" {
			out = append(out, f)
		}
	}
	return out
}

// checkKnown reports the first name of list that no case has as field.
func checkKnown(flagName string, list []string, field func(benchCase) string) error {
	for _, name := range list {
		if !slices.ContainsFunc(cases, func(bc benchCase) bool { return field(bc) == name }) {
			var known []string
			for _, bc := range cases {
				if !slices.Contains(known, field(bc)) {
					known = append(known, field(bc))
				}
			}
			return fmt.Errorf("-%s: unknown %q (known: %s)", flagName, name, strings.Join(known, ", "))
		}
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		peers    = fs.String("peer", "all", "peers to run, comma list: qflow, river, dbos, pgbench")
		wls      = fs.String("workload", "all", "workloads to run, comma list: w0, w1, w1b, w2, w3")
		variants = fs.String("variant", "", "variants to run, comma list (default every variant except qflow's noevents; see README)")
		host     = fs.String("pghost", "", "server host or socket directory (default from DATABASE_URL, else 127.0.0.1)")
		port     = fs.Int("pgport", 0, "server port (default from DATABASE_URL, else 5432)")
		user     = fs.String("pguser", "", "role (default from DATABASE_URL, else root)")
	)
	c := &config{}
	fs.IntVar(&c.reps, "reps", 3, "repetitions of every case, each in a fresh database; the table shows medians")
	fs.IntVar(&c.slots, "slots", 8, "execution slots of every peer: qflow Concurrency, River MaxWorkers, DBOS queue WorkerConcurrency and direct callers")
	fs.IntVar(&c.poolMax, "poolmax", 0, "connection pool size of every peer (default max(20, slots+12))")
	fs.IntVar(&c.runs, "runs", 2000, "W1 and W1b: number of chains")
	fs.IntVar(&c.seqRuns, "seqruns", 200, "W2: number of sequential chains measured")
	fs.IntVar(&c.fan, "fan", 10000, "W3: fan-out width")
	fs.DurationVar(&c.poll, "poll", 10*time.Millisecond, "poll interval of the polling peers (River FetchPollInterval, DBOS queue and GetResult polling)")
	fs.IntVar(&c.pgbenchSeconds, "pgbench-seconds", 20, "W0: pgbench -T of the 8-client run (the 1-client run takes half)")
	fs.StringVar(&c.pgbenchFlag, "pgbench", "", "pgbench binary (default: on PATH, else the newest PostgreSQL bin directory found)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "limit of one repetition of one case")
	fs.StringVar(&c.out, "out", "results.jsonl", "append one JSON line per measurement to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.peers, c.workloads, c.variants = splitList(*peers), splitList(*wls), splitList(*variants)
	if err := errors.Join(
		checkKnown("peer", c.peers, func(bc benchCase) string { return bc.peer }),
		checkKnown("workload", c.workloads, func(bc benchCase) string { return bc.workload }),
		checkKnown("variant", c.variants, func(bc benchCase) string { return bc.variant }),
	); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"reps", c.reps}, {"slots", c.slots}, {"runs", c.runs}, {"seqruns", c.seqRuns}, {"fan", c.fan}, {"pgbench-seconds", c.pgbenchSeconds}} {
		if p.v < 1 {
			return nil, fmt.Errorf("-%s must be at least 1", p.name)
		}
	}
	if c.poolMax == 0 {
		c.poolMax = max(20, c.slots+12)
	}
	url := cmp.Or(os.Getenv("DATABASE_URL"), "postgres://root@127.0.0.1:5432/postgres?sslmode=disable")
	if err := c.setServer(url, *host, uint16(*port), *user); err != nil {
		return nil, err
	}
	return c, nil
}
