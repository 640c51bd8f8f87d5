package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/quantumflow/qflow/internal/flowview"
	"github.com/quantumflow/qflow/runtime"
)

var cmdRuns = &command{
	name:  "runs",
	args:  "[--flow F] [--status S] [--since D] [--limit N] [--after ID] [--json]",
	short: "list runs, newest first",
	long: `
Runs lists runs newest first with their flow, status, start time, duration
and error. --flow and --status (started, completed, failed, cancelled)
filter; --since keeps the runs started within a duration ("1h", "30m") or
after a time (RFC 3339, "2025-06-01T10:00:00Z"). --limit sets the page size;
when more runs match, a hint on standard error gives the --after ID that
continues the listing.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.String("flow", "", "only runs of this flow")
		fs.String("status", "", "only runs with this status: started, completed, failed or cancelled")
		fs.String("since", "", "only runs started within this duration or after this RFC 3339 time")
		fs.Int("limit", 50, "at most this many runs (1 to 1000)")
		fs.String("after", "", "continue after this run id (the last one of the previous page)")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		p := runtime.ListRunsParams{Flow: stringFlag(fs, "flow"), Status: stringFlag(fs, "status")}
		switch p.Status {
		case "", runtime.StatusStarted, runtime.StatusCompleted, runtime.StatusFailed, runtime.StatusCancelled:
		default:
			return usagef("--status %q: want started, completed, failed or cancelled", p.Status)
		}
		limit, _ := strconv.Atoi(stringFlag(fs, "limit"))
		if limit < 1 || limit > 1000 {
			return usagef("--limit %d: want 1 to 1000", limit)
		}
		if a := stringFlag(fs, "after"); a != "" {
			id, err := uuid.Parse(a)
			if err != nil {
				return usagef("--after %q: not a run id", a)
			}
			p.After = id
		}
		var since time.Time
		if s := stringFlag(fs, "since"); s != "" {
			if d, err := time.ParseDuration(s); err == nil && d > 0 {
				since = time.Now().Add(-d)
			} else if t, err := time.Parse(time.RFC3339, s); err == nil {
				since = t
			} else {
				return usagef("--since %q: want a duration such as 1h or an RFC 3339 time", s)
			}
		}
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		// One more than asked tells whether another page exists. The
		// listing is newest first, so --since stops at the first older run.
		p.Limit = limit + 1
		runs, err := client.ListRuns(e.ctx, p)
		if err != nil {
			return friendly(err)
		}
		if !since.IsZero() {
			for i, r := range runs {
				if r.StartedAt.Before(since) {
					runs = runs[:i]
					break
				}
			}
		}
		more := len(runs) > limit
		runs = runs[:min(len(runs), limit)]
		if boolFlag(fs, "json") {
			if runs == nil {
				runs = []runtime.RunSummary{}
			}
			return e.printJSON(runs)
		}
		now := time.Now()
		tw := e.table("ID", "FLOW", "STATUS", "STARTED", "DURATION", "ERROR")
		for _, r := range runs {
			d, _ := flowview.Span(&r.StartedAt, r.FinishedAt, now)
			errText := flowview.CutText(r.Error, 60)
			if errText == "" {
				errText = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Flow, r.Status, r.StartedAt.Local().Format("2006-01-02 15:04:05"), flowview.Duration(d), errText)
		}
		tw.Flush()
		if more {
			fmt.Fprintf(e.stderr, "more runs: qflow runs --after %s%s\n", runs[len(runs)-1].ID, sameFilters(fs))
		}
		return nil
	},
}

// sameFilters repeats the filters given, for the next-page hint.
func sameFilters(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "flow", "status", "since", "limit":
			fmt.Fprintf(&b, " --%s %s", f.Name, f.Value)
		}
	})
	return b.String()
}

func parseRunID(args []string) (uuid.UUID, error) {
	if len(args) != 1 {
		return uuid.Nil, usagef("need exactly one run id")
	}
	id, err := uuid.Parse(args[0])
	if err != nil {
		return uuid.Nil, usagef("%q is not a run id", args[0])
	}
	return id, nil
}

var cmdRunsShow = &command{
	name:  "runs show",
	args:  "[--max-output N] [--tasks N] [--json] ID",
	short: "print a run's steps: states, attempts, durations, errors, outputs",
	long: `
Runs show prints a run: its flow and version, status, duration, input,
error and output, then each step in dependency order with its status,
tasks done, attempts, duration, and its error or output; for a skipped step,
why (its condition was false, it was skipped with a dependency, or it is an
optional step that failed, with its error). Map steps list
their tasks below them, unfinished and failed ones first, up to --tasks.
Values are printed as compact JSON cut to --max-output bytes; --json prints
the run in full.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.Int("max-output", 120, "cut each value to this many bytes (0: no cut)")
		fs.Int("tasks", 10, "list at most this many tasks of a map step")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		id, err := parseRunID(args)
		if err != nil {
			return err
		}
		maxOut, _ := strconv.Atoi(stringFlag(fs, "max-output"))
		maxTasks, _ := strconv.Atoi(stringFlag(fs, "tasks"))
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		r, err := client.GetRun(e.ctx, id)
		if errors.Is(err, runtime.ErrRunNotFound) {
			return fmt.Errorf("no run %s", id)
		}
		if err != nil {
			return friendly(err)
		}
		if boolFlag(fs, "json") {
			return e.printJSON(r)
		}
		def, err := client.GetFlowVersion(e.ctx, r.Flow, r.FlowVersion)
		if err != nil {
			return err
		}
		printRun(e.stdout, r, def, maxOut, maxTasks, time.Now())
		return nil
	},
}

// printRun writes the human form of a run.
func printRun(w io.Writer, r *runtime.Run, def *runtime.FlowDef, maxOut, maxTasks int, now time.Time) {
	d, _ := flowview.Span(&r.StartedAt, r.FinishedAt, now)
	status := r.Status
	if r.FinishedAt != nil {
		status += " after " + flowview.Duration(d)
	} else {
		status += ", running for " + flowview.Duration(d)
	}
	fmt.Fprintf(w, "run      %s\n", r.ID)
	fmt.Fprintf(w, "flow     %s (version %d)\n", r.Flow, r.FlowVersion)
	fmt.Fprintf(w, "status   %s\n", status)
	if r.Unserved {
		fmt.Fprintf(w, "warning  no live worker serves %s version %d: the run waits until one starts\n", r.Flow, r.FlowVersion)
	}
	fmt.Fprintf(w, "started  %s\n", r.StartedAt.Local().Format("2006-01-02 15:04:05.000 MST"))
	fmt.Fprintf(w, "input    %s\n", flowview.Cut(r.Input, maxOut))
	if r.Error != "" {
		where := ""
		if r.FailedStep != "" {
			where = fmt.Sprintf("step %q: ", r.FailedStep)
		}
		fmt.Fprintf(w, "error    %s%s\n", where, flowview.CutText(r.Error, max(maxOut*4, 0)))
	}
	if len(r.Output) > 0 {
		fmt.Fprintf(w, "output   %s\n", flowview.Cut(r.Output, maxOut))
	}
	fmt.Fprintln(w)

	steps := map[string]runtime.StepState{}
	for _, s := range r.Steps {
		steps[s.Step] = s
	}
	defs := map[string]runtime.StepDef{}
	for _, s := range def.Steps {
		defs[s.Slug] = s
	}
	tw := newTable(w, "STEP", "STATUS", "TASKS", "ATTEMPTS", "DURATION", "DETAIL")
	for _, layer := range flowview.Layers(def) {
		for _, slug := range layer {
			s, sd := steps[slug], defs[slug]
			name := slug
			if sd.Map {
				name += " (map)"
			}
			tasks, attempts := "-", "-"
			if s.TaskCount != nil {
				done, most := 0, 0
				for _, t := range s.Tasks {
					if t.Status == runtime.StatusCompleted {
						done++
					}
					most = max(most, t.Attempts)
				}
				tasks = fmt.Sprintf("%d/%d", done, *s.TaskCount)
				attempts = strconv.Itoa(most)
			}
			dur := "-"
			if sd, ok := flowview.Span(s.StartedAt, s.FinishedAt, now); ok {
				dur = flowview.Duration(sd)
			}
			det := detail(s.Status, s.Error, s.Output, sd.DependsOn, maxOut)
			if why := flowview.SkipReason(sd, steps); why != "" {
				det = strings.TrimSuffix(why+": "+det, ": ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, s.Status, tasks, attempts, dur, det)
			if sd.Map {
				shown := pickTasks(s.Tasks, maxTasks)
				for i, t := range shown {
					branch := "├─"
					if i == len(shown)-1 && len(shown) == len(s.Tasks) {
						branch = "└─"
					}
					td := "-"
					if d, ok := flowview.Span(t.StartedAt, t.FinishedAt, now); ok {
						td = flowview.Duration(d)
					}
					fmt.Fprintf(tw, "  %s [%d]\t%s\t\t%d\t%s\t%s\n", branch, t.Index, t.Status, t.Attempts, td, detail(t.Status, t.Error, t.Output, nil, maxOut))
				}
				if n := len(s.Tasks) - len(shown); n > 0 {
					fmt.Fprintf(tw, "  └─ … %d more tasks\t\t\t\t\t(--tasks N lists more)\n", n)
				}
			}
		}
	}
	tw.Flush()
}

// detail is the last column of a step or task line: its error, its output,
// or what it waits for.
func detail(status, errText string, out []byte, deps []string, maxOut int) string {
	switch {
	case errText != "":
		return "error: " + flowview.CutText(errText, max(maxOut*2, 0))
	case len(out) > 0:
		return "output: " + flowview.Cut(out, maxOut)
	case status == runtime.StatusCreated && len(deps) > 0:
		return "waits for " + strings.Join(deps, ", ")
	}
	return ""
}

// pickTasks chooses the tasks to list: unfinished and failed ones first,
// then the rest, up to n, in index order.
func pickTasks(tasks []runtime.TaskState, n int) []runtime.TaskState {
	if n <= 0 || len(tasks) <= n {
		return tasks
	}
	keep := make([]bool, len(tasks))
	left := n
	for pass := 0; pass < 2 && left > 0; pass++ {
		for i, t := range tasks {
			if left == 0 {
				break
			}
			if keep[i] || (pass == 0 && t.Status == runtime.StatusCompleted) {
				continue
			}
			keep[i] = true
			left--
		}
	}
	var out []runtime.TaskState
	for i, t := range tasks {
		if keep[i] {
			out = append(out, t)
		}
	}
	return out
}

var cmdCancel = &command{
	name:  "cancel",
	args:  "ID",
	short: "cancel a run (also: runs cancel ID)",
	long: `
Cancel cancels a run: the run and its unfinished steps and tasks become
cancelled, and handlers running on any worker see their context cancelled
at the worker's next heartbeat. Cancelling a finished run changes nothing
and says so.`,
	flags: func(fs *flag.FlagSet) { dbFlag(fs) },
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		id, err := parseRunID(args)
		if err != nil {
			return err
		}
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		r, err := client.GetRun(e.ctx, id)
		if errors.Is(err, runtime.ErrRunNotFound) {
			return fmt.Errorf("no run %s", id)
		}
		if err != nil {
			return friendly(err)
		}
		if r.Status != runtime.StatusStarted {
			fmt.Fprintf(e.stdout, "run %s already %s\n", id, r.Status)
			return nil
		}
		if err := client.CancelRun(e.ctx, id); err != nil {
			return err
		}
		r, err = client.GetRun(e.ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "run %s %s\n", id, r.Status)
		return nil
	},
}

var cmdResume = &command{
	name:  "resume",
	args:  "ID",
	short: "resume a failed or cancelled run (also: runs resume ID)",
	long: `
Resume queues again what did not complete in a failed or cancelled run:
its failed and cancelled tasks (with a fresh attempt budget), their steps,
and the steps after them as their dependencies complete. Completed tasks
keep their outputs. The run keeps its id and flow version; workers of that
version take it. --retries sets the retries of the resumed tasks (default:
the run's own), --timeout a new deadline for the whole run. A run still
going or completed is left alone and the command says so.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		fs.Int("retries", 0, "retries of each resumed task after its first attempt (0: the run's own; -1: none)")
		fs.Duration("timeout", 0, "a new deadline for the whole run, from now (0: none)")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		id, err := parseRunID(args)
		if err != nil {
			return err
		}
		opts := &runtime.ResumeOptions{
			Retries: fs.Lookup("retries").Value.(flag.Getter).Get().(int),
			Timeout: fs.Lookup("timeout").Value.(flag.Getter).Get().(time.Duration),
		}
		if opts.Retries < runtime.NoRetries || opts.Timeout < 0 {
			return usagef("--retries must be -1 or more and --timeout not negative")
		}
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		err = client.ResumeRun(e.ctx, id, opts)
		switch {
		case errors.Is(err, runtime.ErrRunNotFound):
			return fmt.Errorf("no run %s", id)
		case errors.Is(err, runtime.ErrRunNotResumable):
			r, gerr := client.GetRun(e.ctx, id)
			if gerr != nil {
				return friendly(err)
			}
			fmt.Fprintf(e.stdout, "run %s is %s: nothing to resume\n", id, r.Status)
			return nil
		case err != nil:
			return friendly(err)
		}
		r, err := client.GetRun(e.ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "run %s resumed (resume %d)\n", id, r.Resumes)
		return nil
	},
}
