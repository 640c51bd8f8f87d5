package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

// workerChildFlag, as the first argument, makes this binary a worker
// process of W1/W1b -procs: it runs the chain flow's worker on database
// -db of the server in $QFLOWBENCH_URL until its stdin closes (the parent
// ended, or stopped it) or it receives SIGTERM or SIGINT.
const workerChildFlag = "-worker-child"

// workerChild is the main function of a worker process; it returns the
// exit code.
func workerChild(args []string) int {
	fs := flag.NewFlagSet("qflowbench "+workerChildFlag, flag.ContinueOnError)
	db := fs.String("db", "", "database name")
	slots := fs.Int("slots", 8, "WorkerOptions.Concurrency")
	batch := fs.Int("batch", 0, "WorkerOptions.BatchSize (0: the default)")
	chain := fs.Duration("chain", 0, "WorkerOptions.ChainWindow (0: the default)")
	events := fs.Bool("events", true, "engine events")
	limit := fs.String("limit", "none", "the chain's limit across workers (see limitedChain)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "qflowbench worker %d: %v\n", os.Getpid(), err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	cfg, err := pgxpool.ParseConfig(os.Getenv("QFLOWBENCH_URL"))
	if err != nil {
		return fail(err)
	}
	cfg.ConnConfig.Database = *db
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	def, h, err := limitedChain(*limit)
	if err != nil {
		return fail(err)
	}
	w := qflow.NewWorker(pool, &qflow.WorkerOptions{Concurrency: *slots, BatchSize: *batch, ChainWindow: *chain, Logger: quiet, DisableEvents: !*events})
	if err := w.Register(def, h); err != nil {
		return fail(err)
	}
	if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fail(err)
	}
	return 0
}

// startChildren starts n worker processes on pool's database and waits
// until each has registered in qflow.workers. stop closes their stdin,
// waits up to 10s for them to finish and kills what is left; on Linux a
// child is also killed when this process dies.
func startChildren(ctx context.Context, c config, pool *pgxpool.Pool, n int, ev bool, limit string) (stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	type child struct {
		cmd   *exec.Cmd
		stdin io.Closer
		done  chan struct{}
	}
	var kids []*child
	stop = func() {
		for _, k := range kids {
			k.stdin.Close()
		}
		deadline := time.After(10 * time.Second)
		for _, k := range kids {
			select {
			case <-k.done:
			case <-deadline:
				k.cmd.Process.Kill()
				<-k.done
			}
		}
	}
	db := pool.Config().ConnConfig.Database
	for range n {
		cmd := exec.Command(exe, workerChildFlag, "-db", db, "-slots", strconv.Itoa(c.slots),
			"-batch", strconv.Itoa(c.batch), "-chain", c.chain.String(), "-events="+strconv.FormatBool(ev), "-limit", limit)
		cmd.Env = append(os.Environ(), "QFLOWBENCH_URL="+c.url)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = childAttr()
		in, err := cmd.StdinPipe()
		if err != nil {
			stop()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			in.Close()
			stop()
			return nil, err
		}
		k := &child{cmd: cmd, stdin: in, done: make(chan struct{})}
		go func() { cmd.Wait(); close(k.done) }()
		kids = append(kids, k)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var live int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM qflow.workers WHERE stopped_at IS NULL`).Scan(&live); err != nil {
			stop()
			return nil, err
		}
		if live >= n {
			return stop, nil
		}
		for _, k := range kids {
			select {
			case <-k.done:
				stop()
				return nil, fmt.Errorf("worker process %d exited: %v", k.cmd.Process.Pid, k.cmd.ProcessState)
			default:
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("%d of %d worker processes registered in 30s", live, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
