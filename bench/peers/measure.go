package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Result is one measured repetition of one case, as written to -out.
type Result struct {
	Peer        string    `json:"peer"`
	Workload    string    `json:"workload"`
	Variant     string    `json:"variant"`
	Rep         int       `json:"rep"`
	Slots       int       `json:"slots"`
	PoolMax     int       `json:"pool_max"`
	Runs        int       `json:"runs"`
	Tasks       int       `json:"tasks"`
	WallSec     float64   `json:"wall_s"`
	RunsPerSec  float64   `json:"runs_per_s"`
	TasksPerSec float64   `json:"tasks_per_s"`
	P50ms       float64   `json:"p50_ms,omitempty"`
	P95ms       float64   `json:"p95_ms,omitempty"`
	P99ms       float64   `json:"p99_ms,omitempty"`
	MeanMs      float64   `json:"mean_ms,omitempty"`
	MaxMs       float64   `json:"max_ms,omitempty"`
	MachineCPU  float64   `json:"machine_cpu_pct"` // all cores busy during the measured window, % (100 = every core saturated)
	HarnessCPU  float64   `json:"harness_cpu_pct"` // this process's CPU during the window, % of the whole machine
	Settings    string    `json:"settings"`
	When        time.Time `json:"when"`
}

type cpuSnap struct {
	busy, total uint64        // jiffies from /proc/stat (zero where it is missing)
	proc        time.Duration // this process's user+system time
}

func snapCPU() cpuSnap {
	var s cpuSnap
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if f := strings.Fields(line); len(f) > 1 {
			for i, x := range f[1:] {
				v, _ := strconv.ParseUint(x, 10, 64)
				s.total += v
				if i != 3 && i != 4 { // idle, iowait
					s.busy += v
				}
			}
		}
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	s.proc = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return s
}

// meter records wall time and CPU around a measured section.
type meter struct {
	start time.Time
	cpu   cpuSnap
}

func startMeter() meter { return meter{start: time.Now(), cpu: snapCPU()} }

// finish sets r's wall time, rates and CPU shares; r.Runs and r.Tasks must be set.
func (m meter) finish(r *Result) {
	wall := time.Since(m.start)
	end := snapCPU()
	r.WallSec = wall.Seconds()
	if end.total > m.cpu.total {
		r.MachineCPU = 100 * float64(end.busy-m.cpu.busy) / float64(end.total-m.cpu.total)
	}
	r.HarnessCPU = 100 * float64(end.proc-m.cpu.proc) / float64(wall) / float64(runtime.NumCPU())
	if r.WallSec > 0 {
		r.RunsPerSec = float64(r.Runs) / r.WallSec
		r.TasksPerSec = float64(r.Tasks) / r.WallSec
	}
}

// latencies sets r's percentiles, mean and maximum from d.
func latencies(r *Result, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	s := slices.Clone(d)
	slices.Sort(s)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	pct := func(p float64) float64 {
		i := min(max(int(p*float64(len(s))+0.5)-1, 0), len(s)-1)
		return ms(s[i])
	}
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	r.P50ms, r.P95ms, r.P99ms = pct(0.50), pct(0.95), pct(0.99)
	r.MeanMs = ms(sum) / float64(len(s))
	r.MaxMs = ms(s[len(s)-1])
}

func writeJSON(w io.Writer, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func logResult(w io.Writer, r Result) {
	lat := ""
	if r.P50ms > 0 {
		lat = fmt.Sprintf(" p50=%.2fms p95=%.2fms p99=%.2fms max=%.2fms", r.P50ms, r.P95ms, r.P99ms, r.MaxMs)
	}
	if r.MeanMs > 0 {
		lat += fmt.Sprintf(" mean=%.2fms", r.MeanMs)
	}
	fmt.Fprintf(w, "RESULT %-7s %-4s %-14s rep=%d runs=%d tasks=%d wall=%.3fs runs/s=%.1f tasks/s=%.1f%s cpu(machine)=%.0f%% cpu(harness)=%.0f%%\n",
		r.Peer, r.Workload, r.Variant, r.Rep, r.Runs, r.Tasks, r.WallSec, r.RunsPerSec, r.TasksPerSec, lat, r.MachineCPU, r.HarnessCPU)
}

// wait blocks until ch is closed or ctx ends.
func wait(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// countdown closes done after n calls of dec.
type countdown struct {
	left atomic.Int64
	done chan struct{}
}

func newCountdown(n int) *countdown {
	c := &countdown{done: make(chan struct{})}
	c.left.Store(int64(n))
	if n <= 0 {
		close(c.done)
	}
	return c
}

func (c *countdown) dec() {
	if c.left.Add(-1) == 0 {
		close(c.done)
	}
}

// startAll calls start(0) … start(n-1) from the W1 starter goroutines and
// returns the first error.
func startAll(ctx context.Context, n int, start func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range starters {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if err := start(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}
