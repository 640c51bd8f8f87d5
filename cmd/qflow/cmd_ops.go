package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/quantumflow/qflow/internal/flowview"
	"github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

var cmdWorkers = &command{
	name:  "workers",
	args:  "[--all] [--json]",
	short: "list live workers, their queues, last heartbeat and held tasks",
	long: `
Workers lists the worker processes that heartbeated within the last minute
and have not stopped: id, host and pid, the queues they serve, when they
started, how long ago they last heartbeated, and how many tasks they hold.
--all also lists stopped and stale workers.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.Bool("all", false, "also list stopped and stale workers")
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
		ws, err := client.ListWorkers(e.ctx, runtime.ListWorkersParams{All: boolFlag(fs, "all")})
		if err != nil {
			return friendly(err)
		}
		if boolFlag(fs, "json") {
			if ws == nil {
				ws = []runtime.WorkerInfo{}
			}
			return e.printJSON(ws)
		}
		now := time.Now()
		tw := e.table("ID", "HOST", "PID", "STATE", "QUEUES", "STARTED", "HEARTBEAT", "HELD")
		for _, w := range ws {
			state := "live"
			switch {
			case w.StoppedAt != nil:
				state = "stopped"
			case !w.Live:
				state = "stale"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s ago\t%d\n", w.ID, w.Hostname, w.PID, state, strings.Join(w.Queues, ","),
				w.StartedAt.Local().Format("2006-01-02 15:04:05"), flowview.Duration(now.Sub(w.HeartbeatAt)), w.HeldTasks)
		}
		return tw.Flush()
	},
}

var cmdQueues = &command{
	name:  "queues",
	args:  "[--json]",
	short: "list each flow version's backlog: queued, running, oldest wait",
	long: `
Queues lists every flow version's queue with the tasks waiting for a worker
(including retries waiting out their backoff), the tasks running, and how
long the oldest waiting task has waited.`,
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
		qs, err := client.ListQueues(e.ctx)
		if err != nil {
			return friendly(err)
		}
		if boolFlag(fs, "json") {
			if qs == nil {
				qs = []runtime.QueueInfo{}
			}
			return e.printJSON(qs)
		}
		now := time.Now()
		tw := e.table("QUEUE", "FLOW", "VERSION", "QUEUED", "RUNNING", "OLDEST")
		for _, q := range qs {
			oldest := "-"
			if q.OldestQueuedAt != nil {
				oldest = flowview.Duration(q.OldestAge(now))
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", q.Queue, q.Flow, q.Version, q.Queued, q.Running, oldest)
		}
		return tw.Flush()
	},
}

var cmdEvents = &command{
	name:  "events",
	args:  "[--flow F] [--run ID] [--count N] [--json]",
	short: "print live events as they happen",
	long: `
Events prints the engine's events as they are published (PostgreSQL
NOTIFY on the qflow_events channel), one per line, until interrupted or,
with --count, after that many. --flow and --run keep the events of one
flow or one run. With --json each line is the event's JSON. When the
connection drops, events is reconnected and says on standard error that
events may have been missed.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		jsonFlag(fs)
		fs.String("flow", "", "only events of this flow")
		fs.String("run", "", "only events of this run")
		fs.Int("count", 0, "exit after this many events (0: run until interrupted)")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		var runID uuid.UUID
		if s := stringFlag(fs, "run"); s != "" {
			id, err := uuid.Parse(s)
			if err != nil {
				return usagef("--run %q is not a run id", s)
			}
			runID = id
		}
		flow := stringFlag(fs, "flow")
		count, _ := strconv.Atoi(stringFlag(fs, "count"))
		asJSON := boolFlag(fs, "json")
		pool, _, err := e.connect(fs, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		l, err := notify.Listen(e.ctx, pool, &notify.ListenOptions{Logger: e.logger()}, notify.EventsChannel)
		if err != nil {
			return err
		}
		defer l.Close()
		if !asJSON {
			fmt.Fprintf(e.stderr, "listening for events (interrupt to stop)\n")
		}
		n := 0
		for m := range l.C() {
			if m.Gap {
				fmt.Fprintf(e.stderr, "%s: events may have been missed (%s)\n", e.name, gapReason(m))
				continue
			}
			ev := m.Event
			if ev == nil || (flow != "" && ev.Flow != flow) || (runID != uuid.Nil && ev.RunID != runID) {
				continue
			}
			if asJSON {
				b, _ := json.Marshal(ev)
				fmt.Fprintf(e.stdout, "%s\n", b)
			} else {
				fmt.Fprintln(e.stdout, eventLine(ev))
			}
			if n++; count > 0 && n >= count {
				return nil
			}
		}
		if e.ctx.Err() != nil {
			return nil // interrupted: a normal end
		}
		return errors.New("listener stopped")
	},
}

func gapReason(m notify.Message) string {
	if m.Err != nil {
		return "reconnected after: " + m.Err.Error()
	}
	return fmt.Sprintf("%d dropped", m.Dropped)
}

// eventLine is the human form of an event.
func eventLine(ev *notify.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  %s", ev.Time.Local().Format("15:04:05.000"), ev.RunID, ev)
	if ev.DurationMS > 0 {
		fmt.Fprintf(&b, "  %s", flowview.Duration(time.Duration(ev.DurationMS)*time.Millisecond))
	}
	if ev.Error != "" {
		fmt.Fprintf(&b, "  error: %s", flowview.CutText(ev.Error, 200))
	}
	return b.String()
}
