package main

import (
	"flag"
	"fmt"

	"github.com/quantumflow/qflow/migrations"
)

var cmdMigrate = &command{
	name:  "migrate",
	args:  "[--status] [--json]",
	short: "apply the schema migrations (--status: list applied and pending)",
	long: `
Migrate applies the schema migrations embedded in this build, in one
transaction. It is safe to run from several processes at once and does
nothing when the schema is current. It refuses a database migrated by a
newer release of QuantumFlow.

With --status it changes nothing and lists every migration with when it was
applied, or "pending".`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.Bool("status", false, "list applied and pending migrations; apply nothing")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		pool, _, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		if boolFlag(fs, "status") {
			st, err := migrations.Status(e.ctx, pool)
			if err != nil {
				return err
			}
			if boolFlag(fs, "json") {
				return e.printJSON(st)
			}
			tw := e.table("VERSION", "NAME", "STATUS")
			newer := false
			for _, s := range st {
				status := "pending"
				switch {
				case s.Unknown:
					status = "applied by a newer release"
					newer = true
				case s.AppliedAt != nil:
					status = "applied " + s.AppliedAt.Local().Format("2006-01-02 15:04:05 MST")
				}
				fmt.Fprintf(tw, "%04d\t%s\t%s\n", s.Version, s.Name, status)
			}
			tw.Flush()
			if newer {
				fmt.Fprintf(e.stderr, "%s: the database was migrated by a newer release of QuantumFlow: upgrade qflow before migrating\n", e.name)
			}
			return nil
		}
		before, err := migrations.Version(e.ctx, pool)
		if err != nil {
			return err
		}
		if err := migrations.Migrate(e.ctx, pool); err != nil {
			return err
		}
		after, err := migrations.Version(e.ctx, pool)
		if err != nil {
			return err
		}
		if boolFlag(fs, "json") {
			return e.printJSON(map[string]int{"from_version": before, "version": after})
		}
		if before == after {
			fmt.Fprintf(e.stdout, "schema is up to date (version %d)\n", after)
			return nil
		}
		for _, m := range migrations.All() {
			if m.Version > before && m.Version <= after {
				fmt.Fprintf(e.stdout, "applied %04d_%s\n", m.Version, m.Name)
			}
		}
		fmt.Fprintf(e.stdout, "schema is at version %d\n", after)
		return nil
	},
}
