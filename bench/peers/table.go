package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// summary is the medians of one case's repetitions.
type summary struct {
	benchCase
	reps                            int
	wall, runsPerSec, tasksPerSec   float64
	p50, p95, p99, mean, machineCPU float64
}

func median(rs []Result, f func(Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	n := len(v)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// summarize returns the medians of results per case, by workload, then in
// the order of order.
func summarize(results []Result, order []benchCase) []summary {
	order = slices.Clone(order)
	slices.SortStableFunc(order, func(a, b benchCase) int { return strings.Compare(a.workload, b.workload) })
	var out []summary
	for _, bc := range order {
		var rs []Result
		for _, r := range results {
			if r.Peer == bc.peer && r.Workload == bc.workload && r.Variant == bc.variant {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		out = append(out, summary{
			benchCase:   bc,
			reps:        len(rs),
			wall:        median(rs, func(r Result) float64 { return r.WallSec }),
			runsPerSec:  median(rs, func(r Result) float64 { return r.RunsPerSec }),
			tasksPerSec: median(rs, func(r Result) float64 { return r.TasksPerSec }),
			p50:         median(rs, func(r Result) float64 { return r.P50ms }),
			p95:         median(rs, func(r Result) float64 { return r.P95ms }),
			p99:         median(rs, func(r Result) float64 { return r.P99ms }),
			mean:        median(rs, func(r Result) float64 { return r.MeanMs }),
			machineCPU:  median(rs, func(r Result) float64 { return r.MachineCPU }),
		})
	}
	return out
}

// latencyWorkload reports whether a workload is judged by latency (W2)
// rather than by throughput.
func latencyWorkload(wl string) bool { return wl == "w2" }

func num(v float64, prec int) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// writeTable prints the medians and the ratios as markdown.
func writeTable(w io.Writer, header []string, rows []summary, notes []string) {
	fmt.Fprintln(w, "## QuantumFlow and its peers: medians")
	fmt.Fprintln(w)
	for _, h := range header {
		fmt.Fprintf(w, "%s  \n", h)
	}
	fmt.Fprintln(w)

	var tps, c1 float64 // pgbench floor: 8-client TPS, 1-client mean latency
	for _, s := range rows {
		if s.peer == "pgbench" && s.variant == "c8" {
			tps = s.tasksPerSec
		}
		if s.peer == "pgbench" && s.variant == "c1" {
			c1 = s.mean
		}
	}

	fmt.Fprintln(w, "| workload | peer | variant | reps | wall s | runs/s | tasks/s | p50 ms | p95 ms | p99 ms | mean ms | CPU % | vs w0 |")
	fmt.Fprintln(w, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range rows {
		vs := ""
		switch {
		case s.peer == "pgbench":
		case latencyWorkload(s.workload) && c1 > 0:
			vs = fmt.Sprintf("%.1f commits", s.p50/c1)
		case !latencyWorkload(s.workload) && tps > 0:
			vs = fmt.Sprintf("%.2f tasks/txn", s.tasksPerSec/tps)
		}
		runsPerSec := num(s.runsPerSec, 0)
		if s.workload == "w3" { // one run
			runsPerSec = ""
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			s.workload, s.peer, s.variant, s.reps, num(s.wall, 2), runsPerSec, num(s.tasksPerSec, 0),
			num(s.p50, 2), num(s.p95, 2), num(s.p99, 2), num(s.mean, 2), num(s.machineCPU, 0), vs)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "vs w0: on throughput rows, tasks/s divided by pgbench's 8-client TPS (tasks per floor transaction);")
	fmt.Fprintln(w, "on W2 rows, p50 divided by pgbench's 1-client mean latency (the chain's cost in small commits).")
	fmt.Fprintln(w, "CPU %: the whole machine's busy share during the measured window.")

	var ratios []string
	for _, q := range rows {
		if q.peer != "qflow" {
			continue
		}
		for _, p := range rows {
			if p.workload != q.workload || p.peer == "qflow" || p.peer == "pgbench" {
				continue
			}
			metric, qv, pv, prec := "tasks/s (higher is better)", q.tasksPerSec, p.tasksPerSec, 0
			if latencyWorkload(q.workload) {
				metric, qv, pv, prec = "p50 ms (lower is better)", q.p50, p.p50, 2
			}
			if pv == 0 {
				continue
			}
			ratios = append(ratios, fmt.Sprintf("| %s | %s | %s | %s | %s/%s | %s | %.2f |",
				q.workload, metric, q.variant, num(qv, prec), p.peer, p.variant, num(pv, prec), qv/pv))
		}
	}
	if len(ratios) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| workload | metric | qflow variant | qflow | peer | peer's | qflow/peer |")
		fmt.Fprintln(w, "|---|---|---|--:|---|--:|--:|")
		fmt.Fprintln(w, strings.Join(ratios, "\n"))
		fmt.Fprintln(w)
		fmt.Fprintln(w, "qflow/peer above 1 means QuantumFlow is faster on tasks/s rows and slower on p50 rows.")
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}
