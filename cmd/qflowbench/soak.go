package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

// SoakReport is what the soak workload measured.
type SoakReport struct {
	Seconds float64 `json:"seconds"`
	// PeakTasksPerS is W1b's throughput, measured just before (PeakMeasured)
	// or given with -soak-tps; runs were started at Rate × that.
	PeakTasksPerS   float64 `json:"peak_tasks_per_s"`
	PeakMeasured    bool    `json:"peak_measured"`
	Rate            float64 `json:"rate"`
	TargetTasksPerS float64 `json:"target_tasks_per_s"`
	// Autovacuum is the server's autovacuum setting during the soak.
	Autovacuum    string       `json:"autovacuum"`
	StartedRuns   int64        `json:"started_runs"`
	CompletedRuns int64        `json:"completed_runs"`
	Minutes       []SoakMinute `json:"minutes"`
	// Start and End are the sizes of every table and index in schema qflow
	// once the worker is up and when the soak stops starting runs.
	Start []RelationSize `json:"start"`
	End   []RelationSize `json:"end"`
}

// SoakMinute is one minute of a soak. Latencies are from a run's start to
// its completion (runs.started_at to runs.finished_at), over the runs that
// completed in that minute.
type SoakMinute struct {
	Minute        int     `json:"minute"`
	StartedRuns   int64   `json:"started_runs"`
	CompletedRuns int64   `json:"completed_runs"`
	TasksPerS     float64 `json:"tasks_per_s"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	// BacklogRuns are the runs started and not finished at the minute's end.
	BacklogRuns int64 `json:"backlog_runs"`
	// RSSBytes is this process's resident set (the worker, the starter and
	// the measurement); Connections counts the server's backends on the
	// soak's database (pg_stat_activity), the measuring one included.
	RSSBytes    int64 `json:"rss_bytes"`
	Connections int   `json:"connections"`
}

// RelationSize is one table or index of schema qflow. Tuple and vacuum
// counts (pg_stat_user_tables) are for tables only; they come from the
// server's cumulative statistics, which each backend reports at most about
// once a second, so they can lag the sizes a little.
type RelationSize struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`  // table or index
	Table       string `json:"table"` // the table an index belongs to
	Bytes       int64  `json:"bytes"` // pg_relation_size
	TotalBytes  int64  `json:"total_bytes"`
	LiveTuples  *int64 `json:"live_tuples,omitempty"`
	DeadTuples  *int64 `json:"dead_tuples,omitempty"`
	Vacuums     *int64 `json:"vacuums,omitempty"`
	Autovacuums *int64 `json:"autovacuums,omitempty"`
}

const (
	sqlRelationSizes = `
SELECT c.relname, CASE c.relkind WHEN 'r' THEN 'table' ELSE 'index' END, coalesce(t.relname, c.relname),
       pg_relation_size(c.oid), pg_total_relation_size(c.oid),
       s.n_live_tup, s.n_dead_tup, s.vacuum_count, s.autovacuum_count
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = 'qflow' AND c.relkind IN ('r', 'i')
ORDER BY 3, c.relkind DESC, 1`

	// sqlSoakMinute reads the runs that completed in [$1, $2): count, p50
	// and p99 of start→completion in ms, and the runs still going. It scans
	// qflow.runs once (a minute's measurement, not part of the workload).
	sqlSoakMinute = `
SELECT count(*) FILTER (WHERE w),
       coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE w), 0),
       coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms) FILTER (WHERE w), 0),
       count(*) FILTER (WHERE status = 'started')
FROM (SELECT status, status = 'completed' AND finished_at >= $1 AND finished_at < $2 AS w,
             extract(epoch FROM finished_at - started_at)::float8 * 1000 AS ms
      FROM qflow.runs) r`

	sqlConnections = `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()`
)

// soak measures peak W1b throughput (unless -soak-tps gives it), then
// starts chain runs at c.soakRate of it for c.soak against one in-process
// worker, in a database of its own.
func soak(ctx context.Context, c config, ev bool, log io.Writer) (*SoakReport, error) {
	rep := &SoakReport{PeakTasksPerS: c.soakTPS, Rate: c.soakRate}
	if rep.PeakTasksPerS == 0 {
		p := params{runs: c.runs[0]}
		m, err := withDatabase(ctx, c.url, func(pool *pgxpool.Pool) (map[string]float64, error) {
			return chain(ctx, c, p, pool, ev, true, log)
		})
		if err != nil {
			return nil, fmt.Errorf("peak: %w", err)
		}
		rep.PeakTasksPerS, rep.PeakMeasured = m["tasks_per_s"], true
	}
	rep.TargetTasksPerS = rep.Rate * rep.PeakTasksPerS
	fmt.Fprintf(log, "soak: peak W1b %.0f tasks/s (%s); starting runs at %.0f tasks/s for %s\n",
		rep.PeakTasksPerS, map[bool]string{true: "measured", false: "-soak-tps"}[rep.PeakMeasured], rep.TargetTasksPerS, c.soak)
	_, err := withDatabase(ctx, c.url, func(pool *pgxpool.Pool) (map[string]float64, error) {
		return nil, soakIn(ctx, c, pool, ev, rep, log)
	})
	return rep, err
}

func soakIn(ctx context.Context, c config, pool *pgxpool.Pool, ev bool, rep *SoakReport, log io.Writer) error {
	if err := pool.QueryRow(ctx, `SHOW autovacuum`).Scan(&rep.Autovacuum); err != nil {
		return err
	}
	if rep.Autovacuum != "on" {
		fmt.Fprintln(log, "soak: note: autovacuum is OFF on this server, so nothing vacuums the engine's tables during the soak")
	}
	def, h := chainFlow()
	client := qflow.NewClient(pool, &qflow.ClientOptions{Logger: quiet, DisableEvents: !ev, TracerProvider: otelTP, MeterProvider: otelMP})
	defer client.Close()
	if _, err := client.DefineFlow(ctx, def); err != nil {
		return err
	}
	stopWorker, err := startWorker(c, pool, ev, def, h)
	if err != nil {
		return err
	}
	defer stopWorker()
	time.Sleep(200 * time.Millisecond)
	if rep.Start, err = relationSizes(ctx, pool); err != nil {
		return err
	}
	var t0srv time.Time
	if err := pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t0srv); err != nil {
		return err
	}
	t0 := time.Now()

	// The sampler reads a row at the end of every full minute (half a
	// second late, so the minute's last commits are in).
	var started atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampled sync.WaitGroup
	var sampleErr error
	sampled.Add(1)
	go func() {
		defer sampled.Done()
		var before int64
		for m := 1; time.Duration(m)*time.Minute <= c.soak; m++ {
			select {
			case <-sampleCtx.Done():
				return
			case <-time.After(time.Until(t0.Add(time.Duration(m)*time.Minute + 500*time.Millisecond))):
			}
			row := SoakMinute{Minute: m}
			now := started.Load()
			row.StartedRuns, before = now-before, now
			from, to := t0srv.Add(time.Duration(m-1)*time.Minute), t0srv.Add(time.Duration(m)*time.Minute)
			if err := pool.QueryRow(ctx, sqlSoakMinute, from, to).Scan(&row.CompletedRuns, &row.P50Ms, &row.P99Ms, &row.BacklogRuns); err != nil {
				sampleErr = err
				return
			}
			if err := pool.QueryRow(ctx, sqlConnections).Scan(&row.Connections); err != nil {
				sampleErr = err
				return
			}
			row.TasksPerS = float64(chainSteps*row.CompletedRuns) / 60
			row.RSSBytes = rss()
			rep.Minutes = append(rep.Minutes, row)
			fmt.Fprintf(log, "soak: minute %d: %.0f tasks/s, p50 %.1f ms, p99 %.1f ms, backlog %d runs, RSS %.1f MiB, %d connections\n",
				m, row.TasksPerS, row.P50Ms, row.P99Ms, row.BacklogRuns, float64(row.RSSBytes)/(1<<20), row.Connections)
		}
	}()

	// The starter: every 100ms, the runs due by now at the target rate.
	runsPerS := rep.TargetTasksPerS / chainSteps
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var next int
	for {
		elapsed := time.Since(t0)
		if elapsed >= c.soak {
			break
		}
		if due := int(elapsed.Seconds()*runsPerS) - int(started.Load()); due > 0 {
			inputs := make([]any, due)
			for i := range inputs {
				inputs[i] = next
				next++
			}
			if _, err := client.StartRuns(ctx, def.Slug, inputs, nil); err != nil {
				stopSampling()
				sampled.Wait()
				return err
			}
			started.Add(int64(due))
		}
		select {
		case <-ctx.Done():
			stopSampling()
			sampled.Wait()
			return ctx.Err()
		case <-tick.C:
		}
	}
	sampled.Wait()
	stopSampling()
	if sampleErr != nil {
		return sampleErr
	}
	rep.Seconds = time.Since(t0).Seconds()
	rep.StartedRuns = started.Load()
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs WHERE status = 'completed'`).Scan(&rep.CompletedRuns); err != nil {
		return err
	}
	rep.End, err = relationSizes(ctx, pool)
	return err
}

func relationSizes(ctx context.Context, pool *pgxpool.Pool) ([]RelationSize, error) {
	rows, _ := pool.Query(ctx, sqlRelationSizes)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RelationSize, error) {
		var s RelationSize
		err := r.Scan(&s.Name, &s.Kind, &s.Table, &s.Bytes, &s.TotalBytes, &s.LiveTuples, &s.DeadTuples, &s.Vacuums, &s.Autovacuums)
		return s, err
	})
}

// rss returns this process's resident set size (VmRSS), 0 if unknown.
func rss() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// summary is the soak's result in Result.Metrics.
func (r *SoakReport) summary() map[string]float64 {
	m := map[string]float64{
		"seconds": r.Seconds, "peak_tasks_per_s": r.PeakTasksPerS, "target_tasks_per_s": r.TargetTasksPerS,
		"started_runs": float64(r.StartedRuns), "completed_runs": float64(r.CompletedRuns),
	}
	if n := len(r.Minutes); n > 0 {
		var sum, p99 float64
		for _, row := range r.Minutes {
			sum += row.TasksPerS
			p99 = max(p99, row.P99Ms)
		}
		m["mean_tasks_per_s"] = sum / float64(n)
		m["max_minute_p99_ms"] = p99
		m["last_rss_mib"] = float64(r.Minutes[n-1].RSSBytes) / (1 << 20)
	}
	total := func(rs []RelationSize) (b, dead float64) {
		for _, s := range rs {
			if s.Kind == "table" {
				b += float64(s.TotalBytes)
				if s.DeadTuples != nil {
					dead += float64(*s.DeadTuples)
				}
			}
		}
		return b, dead
	}
	m["start_total_mib"], _ = total(r.Start)
	m["end_total_mib"], m["end_dead_tuples"] = total(r.End)
	m["start_total_mib"] /= 1 << 20
	m["end_total_mib"] /= 1 << 20
	return m
}

// printSoak prints a soak's minutes and its start and end sizes.
func printSoak(w io.Writer, r Result) {
	s := r.Soak
	ev := "on"
	if r.Events != nil && !*r.Events {
		ev = "off"
	}
	fmt.Fprintf(w, "\nsoak (rep %d, events %s): %.0fs at %.0f tasks/s = %.2f × peak %.0f; autovacuum %s; %d runs started, %d completed\n",
		r.Rep, ev, s.Seconds, s.TargetTasksPerS, s.Rate, s.PeakTasksPerS, s.Autovacuum, s.StartedRuns, s.CompletedRuns)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\tstarted runs\tcompleted runs\ttasks/s\tp50 ms\tp99 ms\tbacklog runs\tRSS MiB\tconnections\t")
	for _, m := range s.Minutes {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%.1f\t%.1f\t%d\t%.1f\t%d\t\n",
			m.Minute, m.StartedRuns, m.CompletedRuns, m.TasksPerS, m.P50Ms, m.P99Ms, m.BacklogRuns, float64(m.RSSBytes)/(1<<20), m.Connections)
	}
	tw.Flush()
	fmt.Fprintln(w)
	end := map[string]RelationSize{}
	for _, e := range s.End {
		end[e.Name] = e
	}
	num := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatInt(*p, 10)
	}
	kib := func(b int64) string { return strconv.FormatInt(b>>10, 10) }
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "relation\tkind\tKiB start\tKiB end\ttotal KiB start\ttotal KiB end\tlive start\tlive end\tdead start\tdead end\tautovacuums end\t")
	for _, a := range s.Start {
		b := end[a.Name]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", a.Name, a.Kind,
			kib(a.Bytes), kib(b.Bytes), kib(a.TotalBytes), kib(b.TotalBytes),
			num(a.LiveTuples), num(b.LiveTuples), num(a.DeadTuples), num(b.DeadTuples), num(b.Autovacuums))
	}
	tw.Flush()
}
