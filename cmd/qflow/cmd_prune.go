package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

var cmdPrune = &command{
	name:  "prune",
	args:  "--older-than D [--status S,...] [--batch N] [--json]",
	short: "delete finished runs older than a duration, with their steps and tasks",
	long: `
Prune deletes runs that finished more than --older-than ago ("720h", "90m"),
with their step states and tasks, in batches of --batch runs (one short
transaction each, default 500). --status limits it to runs that completed,
failed or were cancelled (a comma list; default all three). Runs still
going are never touched. It prints what it deleted.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.Duration("older-than", 0, "delete runs that finished at least this long ago (required)")
		fs.String("status", "", "only runs that ended so: completed, failed, cancelled (comma list)")
		fs.Int("batch", 500, "runs per transaction (1 to 10000)")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		opts := runtime.PruneOptions{
			OlderThan: fs.Lookup("older-than").Value.(flag.Getter).Get().(time.Duration),
			BatchSize: fs.Lookup("batch").Value.(flag.Getter).Get().(int),
		}
		if opts.OlderThan <= 0 {
			return usagef("--older-than is required and must be positive")
		}
		if opts.BatchSize < 1 || opts.BatchSize > 10000 {
			return usagef("--batch %d: want 1 to 10000", opts.BatchSize)
		}
		if s := stringFlag(fs, "status"); s != "" {
			for _, st := range strings.Split(s, ",") {
				switch st = strings.TrimSpace(st); st {
				case runtime.StatusCompleted, runtime.StatusFailed, runtime.StatusCancelled:
					opts.Statuses = append(opts.Statuses, st)
				default:
					return usagef("--status %q: want completed, failed or cancelled", st)
				}
			}
		}
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		res, err := client.Prune(e.ctx, opts)
		if err != nil {
			return friendly(err)
		}
		if boolFlag(fs, "json") {
			return e.printJSON(res)
		}
		fmt.Fprintf(e.stdout, "pruned %d runs (%d steps, %d tasks) that finished more than %s ago\n",
			res.Runs, res.Steps, res.Tasks, opts.OlderThan)
		return nil
	},
}
