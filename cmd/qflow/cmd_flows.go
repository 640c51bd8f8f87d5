package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/quantumflow/qflow/internal/flowview"
	"github.com/quantumflow/qflow/runtime"
)

var cmdFlows = &command{
	name:  "flows",
	args:  "[--json]",
	short: "list stored flows and their versions",
	long: `
Flows lists every stored flow version: slug, version, number of steps, shape
hash, queue and when the version was first defined. A flow gets a new
version when workers or clients define it with a different shape; runs keep
the version they started on.`,
	flags: func(fs *flag.FlagSet) { dbFlag(fs); jsonFlag(fs) },
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		flows, err := client.ListFlows(e.ctx)
		if err != nil {
			return friendly(err)
		}
		if boolFlag(fs, "json") {
			if flows == nil {
				flows = []runtime.FlowInfo{}
			}
			return e.printJSON(flows)
		}
		tw := e.table("FLOW", "VERSION", "STEPS", "SHAPE", "QUEUE", "DEFINED")
		for _, f := range flows {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", f.Slug, f.Version, f.Steps, f.ShapeHash[:min(12, len(f.ShapeHash))], f.Queue, f.CreatedAt.Local().Format("2006-01-02 15:04:05"))
		}
		return tw.Flush()
	},
}

var cmdFlowsShow = &command{
	name:  "flows show",
	args:  "[--version N] [--json] FLOW",
	short: "print a flow's steps, their options and its Mermaid diagram",
	long: `
Flows show prints the newest version of a flow (or --version N): each step
with its kind (single or map, and "when" for a conditional step, "optional"
for an optional one), dependencies (a "?" marks one whose skip the step
takes: it runs without it), whether it takes the flow input, and its
effective options (attempts, backoff, timeout, start delay, after inheriting
from the flow and the defaults), then the flow's Mermaid diagram.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.Int("version", 0, "the flow version to show (default the newest)")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) != 1 {
			return usagef("need exactly one flow")
		}
		version, _ := strconv.Atoi(stringFlag(fs, "version"))
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		def, err := client.GetFlowVersion(e.ctx, args[0], version)
		if errors.Is(err, runtime.ErrUnknownFlow) {
			return fmt.Errorf("no flow %q%s (see 'qflow flows')", args[0], map[bool]string{true: fmt.Sprintf(" version %d", version)}[version > 0])
		}
		if err != nil {
			return friendly(err)
		}
		var info runtime.FlowInfo
		flows, err := client.ListFlows(e.ctx)
		if err != nil {
			return err
		}
		hash := def.ShapeHash()
		var versions []string
		for _, f := range flows {
			if f.Slug == def.Slug {
				versions = append(versions, strconv.Itoa(f.Version))
				if f.ShapeHash == hash {
					info = f
				}
			}
		}
		diagram, err := flowview.Mermaid(def)
		if err != nil {
			return err
		}
		if boolFlag(fs, "json") {
			type step struct {
				runtime.StepDef
				Effective flowview.Options `json:"effective"`
			}
			out := struct {
				runtime.FlowInfo
				Definition *runtime.FlowDef `json:"definition"`
				Steps      []step           `json:"effective_steps"`
				Mermaid    string           `json:"mermaid"`
			}{FlowInfo: info, Definition: def, Mermaid: diagram}
			for _, s := range def.Steps {
				out.Steps = append(out.Steps, step{s, flowview.Effective(def, s)})
			}
			return e.printJSON(out)
		}
		fmt.Fprintf(e.stdout, "flow %s version %d (of %s), shape %s, queue %s\n\n", def.Slug, info.Version, strings.Join(versions, ", "), hash, info.Queue)
		tw := e.table("STEP", "KIND", "DEPENDS ON", "INPUT", "ATTEMPTS", "BACKOFF", "TIMEOUT", "DELAY")
		for _, s := range def.Steps {
			o := flowview.Effective(def, s)
			kind := flowview.Kind(s)
			deps := flowview.DependsOn(s)
			input := "-"
			if s.TakesInput || (s.Map && len(s.DependsOn) == 0) {
				input = "yes"
			}
			delay := "-"
			if o.StartDelay > 0 {
				delay = o.StartDelay.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Slug, kind, deps, input, o.MaxAttempts, o.BaseDelay, o.Timeout, delay)
		}
		tw.Flush()
		fmt.Fprintf(e.stdout, "\n```mermaid\n%s\n```\n", strings.TrimRight(diagram, "\n"))
		return nil
	},
}

var cmdFlowsStats = &command{
	name:  "flows stats",
	args:  "[--json] FLOW",
	short: "print the statistics the engine learned for a flow's steps",
	long: `
Flows stats prints, for each step of a flow (across its versions), what the
engine recorded from every run as its tasks finished: runs, tasks finished
(completed or failed for good), tasks failed for good, attempts, failed
attempts, tasks a retry recovered, attempts that hit the step timeout, and
the durations of successful attempts in milliseconds (median, 95th and 99th
percentiles over the newest 128, and the longest). Workers with
WorkerOptions.Optimize tune the flow from these.`,
	flags: func(fs *flag.FlagSet) { dbFlag(fs); jsonFlag(fs) },
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) != 1 {
			return usagef("need exactly one flow")
		}
		pool, client, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		stats, err := client.StepStats(e.ctx, args[0])
		if err != nil {
			return friendly(err)
		}
		if boolFlag(fs, "json") {
			if stats == nil {
				stats = []runtime.StepStats{}
			}
			return e.printJSON(stats)
		}
		if len(stats) == 0 {
			fmt.Fprintf(e.stdout, "no statistics for flow %q: none of its tasks has finished (see 'qflow flows')\n", args[0])
			return nil
		}
		tw := e.table("STEP", "RUNS", "TASKS", "FAILED", "ATTEMPTS", "FAILED ATTEMPTS", "RETRIED OK", "TIMEOUTS", "P50 MS", "P95 MS", "P99 MS", "MAX MS")
		for _, s := range stats {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\n", s.Step, s.Runs, s.Tasks, s.Failures,
				s.Attempts, s.FailedAttempts, s.RetriedOK, s.Timeouts, s.P50MS, s.P95MS, s.P99MS, s.MaxMS)
		}
		return tw.Flush()
	},
}
