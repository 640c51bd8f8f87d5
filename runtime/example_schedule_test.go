package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// Cron schedules: Client.Schedule starts a run of a flow at every tick of
// a cron spec, in a time zone, with an input of its own. The workers that
// serve the flow fire the ticks, one run per tick however many of them
// run. Here a per-second schedule (six fields: seconds first) sends a
// digest twice, then is paused, listed and deleted; a time zone that does
// not exist is refused.
func ExampleClient_Schedule() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	def, err := runtime.NewFlow("digest").Step("send", runtime.StepDef{TakesInput: true}).Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	client := runtime.NewClient(pool, nil)
	defer client.Close()
	if _, err := client.DefineFlow(ctx, def); err != nil {
		fmt.Println(err)
		return
	}
	_, err = client.Schedule(ctx, "ops_digest", runtime.ScheduleParams{
		Flow:  "digest",
		Cron:  "* * * * * *", // every second; "0 8 * * 1-5" is 8:00 on weekdays
		TZ:    "Europe/Berlin",
		Input: map[string]string{"to": "ops@example.com"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = client.Schedule(ctx, "moon_digest", runtime.ScheduleParams{Flow: "digest", Cron: "@daily", TZ: "Moon/Tranquility"})
	fmt.Println(err)

	sent := make(chan string, 10)
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{PollInterval: 100 * time.Millisecond})
	err = w.Register(def, map[string]runtime.Handler{"send": func(ctx context.Context, t *runtime.Task) (json.RawMessage, error) {
		var in struct{ Run struct{ To string } }
		if err := json.Unmarshal(t.Input, &in); err != nil {
			return nil, err
		}
		sent <- in.Run.To
		return json.RawMessage(`true`), nil
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	fmt.Println("sent to", <-sent)
	fmt.Println("sent to", <-sent)
	if err := client.PauseSchedule(ctx, "ops_digest"); err != nil {
		fmt.Println(err)
	}
	stop()
	if err := <-stopped; err != nil {
		fmt.Println(err)
	}

	list, err := client.ListSchedules(ctx, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range list {
		fmt.Printf("%s: flow %s, %q in %s, paused %v\n", s.Name, s.Flow, s.Cron, s.TZ, s.Paused)
	}
	if err := client.DeleteSchedule(ctx, "ops_digest"); err != nil {
		fmt.Println(err)
	}
	// Output:
	// qflow: schedule "moon_digest": bad cron schedule: unknown time zone "Moon/Tranquility" (want an IANA name such as Europe/Berlin or America/New_York)
	// sent to ops@example.com
	// sent to ops@example.com
	// ops_digest: flow digest, "* * * * * *" in Europe/Berlin, paused true
}
