package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

var cmdSchedules = &command{
	name:  "schedules",
	args:  "[--flow F] [--json]",
	short: "list cron schedules: flow, spec, time zone, next and last tick",
	long: `
Schedules lists the cron schedules (see runtime.Client.Schedule and the
//qflow:flow cron= annotation): name, flow, spec, time zone, missed-tick
policy, whether it is paused, its next tick and the last tick fired with
the run it started. --flow keeps those of one flow. Times are printed in
the schedule's time zone.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.String("flow", "", "only the schedules of this flow")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		list, err := client.ListSchedules(e.ctx, stringFlag(fs, "flow"))
		if err != nil {
			return friendly(err)
		}
		if boolFlag(fs, "json") {
			if list == nil {
				list = []runtime.ScheduleInfo{}
			}
			return e.printJSON(list)
		}
		tw := e.table("NAME", "FLOW", "CRON", "TZ", "MISSED", "STATE", "NEXT", "LAST", "LAST RUN")
		for _, s := range list {
			state := "active"
			if s.Paused {
				state = "paused"
			}
			last, run := "-", "-"
			if s.LastTick != nil {
				last = inZone(*s.LastTick, s.TZ)
			}
			if s.LastRunID != nil {
				run = s.LastRunID.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Flow, s.Cron, s.TZ, s.Missed, state, inZone(s.NextTick, s.TZ), last, run)
		}
		return tw.Flush()
	},
}

// inZone formats t in the time zone tz (UTC if it does not load).
func inZone(t time.Time, tz string) string {
	if loc, err := time.LoadLocation(tz); err == nil {
		t = t.In(loc)
	} else {
		t = t.UTC()
	}
	return t.Format("2006-01-02 15:04:05 MST")
}

var cmdSchedulesSet = &command{
	name:  "schedules set",
	args:  "--flow F --cron SPEC [--tz ZONE] [--input JSON] [--missed latest|all] [--paused] NAME",
	short: "create or update a cron schedule",
	long: `
Schedules set creates the schedule NAME, or updates it, as
runtime.Client.Schedule does: runs of --flow start at every tick of --cron
(five crontab fields, six with seconds first, @hourly, "@every 90s") read in
--tz (an IANA name; default UTC), with --input as their input (JSON; default
null, the flow's zero input). --missed says what happens to ticks missed
while no worker ran: latest (default) runs the latest once, all runs each.
An update that keeps the spec and time zone keeps the next tick; --paused
applies only when the schedule is created. It prints the schedule.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.String("flow", "", "the flow to run (required)")
		fs.String("cron", "", "the cron spec (required)")
		fs.String("tz", "", "the IANA time zone of the spec (default UTC)")
		fs.String("input", "", "each run's input, as JSON (default null)")
		fs.String("missed", "", "missed-tick policy: latest or all (default latest)")
		fs.Bool("paused", false, "create the schedule paused")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) != 1 {
			return usagef("need exactly one schedule name")
		}
		p := runtime.ScheduleParams{
			Flow:   stringFlag(fs, "flow"),
			Cron:   stringFlag(fs, "cron"),
			TZ:     stringFlag(fs, "tz"),
			Missed: runtime.MissedPolicy(stringFlag(fs, "missed")),
			Paused: boolFlag(fs, "paused"),
		}
		if p.Flow == "" || p.Cron == "" {
			return usagef("--flow and --cron are required")
		}
		if in := stringFlag(fs, "input"); in != "" {
			if !json.Valid([]byte(in)) {
				return usagef("--input is not valid JSON")
			}
			p.Input = json.RawMessage(in)
		}
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		s, err := client.Schedule(e.ctx, args[0], p)
		if err != nil {
			return friendly(err)
		}
		if boolFlag(fs, "json") {
			return e.printJSON(s)
		}
		fmt.Fprintf(e.stdout, "schedule %s: flow %s, %q in %s, next tick %s\n", s.Name, s.Flow, s.Cron, s.TZ, inZone(s.NextTick, s.TZ))
		return nil
	},
}

// scheduleVerb is schedules pause, resume or delete.
func scheduleVerb(verb, short, long, done string, do func(c *runtime.Client, e *env, name string) error) *command {
	return &command{
		name:  "schedules " + verb,
		args:  "NAME",
		short: short,
		long:  long,
		flags: dbFlag,
		run: func(e *env, fs *flag.FlagSet, args []string) error {
			if len(args) != 1 {
				return usagef("need exactly one schedule name")
			}
			pool, client, err := e.connect(fs, 2)
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := do(client, e, args[0]); errors.Is(err, runtime.ErrUnknownSchedule) {
				return fmt.Errorf("no schedule %q (see 'qflow schedules')", args[0])
			} else if err != nil {
				return friendly(err)
			}
			fmt.Fprintf(e.stdout, "schedule %s %s\n", args[0], done)
			return nil
		},
	}
}

var (
	cmdSchedulesPause = scheduleVerb("pause", "stop a schedule from firing", `
Schedules pause stops the schedule NAME from firing until 'qflow schedules
resume'. Pausing a paused schedule does nothing.`, "paused",
		func(c *runtime.Client, e *env, name string) error { return c.PauseSchedule(e.ctx, name) })
	cmdSchedulesResume = scheduleVerb("resume", "let a paused schedule fire again, from its next tick", `
Schedules resume lets the paused schedule NAME fire again, from its first
tick after now: the ticks of the pause are skipped.`, "resumed",
		func(c *runtime.Client, e *env, name string) error { return c.ResumeSchedule(e.ctx, name) })
	cmdSchedulesDelete = scheduleVerb("delete", "delete a schedule (its runs are kept)", `
Schedules delete deletes the schedule NAME and its record of fired ticks;
the runs it started are kept. A schedule declared by a //qflow:flow cron=
annotation is created again when a worker registering the flow starts:
remove the annotation, or pause the schedule instead.`, "deleted",
		func(c *runtime.Client, e *env, name string) error { return c.DeleteSchedule(e.ctx, name) })
)
