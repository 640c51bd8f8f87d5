package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

var cmdCheck = &command{
	name:  "check",
	args:  "[--limit N] [--json]",
	short: "list rows of runs, steps and tasks that break the engine's rules",
	long: `
Check reads qflow.runs, qflow.step_states and qflow.step_tasks and lists every
row that breaks a rule the engine keeps (a status value it does not know, a
counter below zero, a status out of step with finished_at, the output or the
counters), one line each: the table, the row's key and its status, at most
--limit (1 to 1000, default 100). It exits 0 when there are none and 1 when
there are. The engine keeps these rules itself, not with CHECK constraints,
so a row changed by hand is found here (docs/reliability.md). It reads every
row of the three tables: on a large database, run it off-peak.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.Int("limit", 100, "most rows to list (1 to 1000)")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		limit := fs.Lookup("limit").Value.(flag.Getter).Get().(int)
		if limit < 1 || limit > 1000 {
			return usagef("--limit %d: want 1 to 1000", limit)
		}
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		broken, err := client.BrokenRows(e.ctx, limit)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42883" { // no qflow.invariant_violations
			return fmt.Errorf("%w\n\tthe schema predates migration 0008: run 'qflow migrate'", err)
		}
		if err != nil {
			return friendly(err)
		}
		if boolFlag(fs, "json") {
			if broken == nil {
				broken = []string{}
			}
			if err := e.printJSON(broken); err != nil {
				return err
			}
		} else if len(broken) == 0 {
			fmt.Fprintln(e.stdout, "no row breaks the engine's rules")
		} else {
			for _, b := range broken {
				fmt.Fprintln(e.stdout, b)
			}
		}
		switch {
		case len(broken) == limit:
			return fmt.Errorf("at least %d rows break the engine's rules", limit)
		case len(broken) > 0:
			return fmt.Errorf("%d rows break the engine's rules", len(broken))
		}
		return nil
	},
}
