// Package flows declares the three flows of the optimisation example
// (examples/optimize) with //qflow: annotations; qflow_gen.go is generated
// from them. Each flow is the generated-code counterpart of a scenario of
// the runtime/goals measurement (docs/benchmarks.md, "Optimisation
// levels"):
//
//   - critical: side work that first-in-first-out claims take before the
//     chain that decides the run's length (advanced reorders them);
//   - hang: a step whose first attempt may hang until its timeout (basic
//     learns a shorter one);
//   - stragglers: three stages of idempotent calls, one in seven of which
//     is slow (aggressive hedges them).
//
// The steps only sleep: their inputs say for how long, so one build serves
// any scale.
package flows

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

//go:generate go run github.com/quantumflow/qflow/cmd/qflowgen

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// Critical is the input of flow critical: Plan hands Sides side tasks of
// SideMS each to the map step Side, and starts a chain of four steps of
// ChainMS each; Report, ReportMS, waits for both. With two slots the
// ideal run takes Plan + 4 × ChainMS + ReportMS (the chain on one slot,
// the sides on the other, when Sides × SideMS fits beside the chain).
//
//qflow:flow critical
type Critical struct {
	Sides    int `json:"sides"`
	SideMS   int `json:"side_ms"`
	ChainMS  int `json:"chain_ms"`
	ReportMS int `json:"report_ms"`
}

// Plan makes the side tasks: each element is its duration in ms. It is
// listed before the chain, so its tasks are queued first.
//
//qflow:step flow=critical
func Plan(ctx context.Context, in Critical) ([]int, error) {
	out := make([]int, in.Sides)
	for i := range out {
		out[i] = in.SideMS
	}
	return out, nil
}

// Side is one side task.
//
//qflow:step flow=critical depends=Plan map
func Side(ctx context.Context, d int) (int, error) { return d, sleep(ctx, ms(d)) }

// Chain1 starts the chain when Plan is done, at the same moment as the
// side tasks.
//
//qflow:step flow=critical depends=Plan
func Chain1(ctx context.Context, in Critical, _ []int) (int, error) {
	return 1, sleep(ctx, ms(in.ChainMS))
}

//qflow:step flow=critical depends=Chain1
func Chain2(ctx context.Context, in Critical, n int) (int, error) {
	return n + 1, sleep(ctx, ms(in.ChainMS))
}

//qflow:step flow=critical depends=Chain2
func Chain3(ctx context.Context, in Critical, n int) (int, error) {
	return n + 1, sleep(ctx, ms(in.ChainMS))
}

//qflow:step flow=critical depends=Chain3
func Chain4(ctx context.Context, in Critical, n int) (int, error) {
	return n + 1, sleep(ctx, ms(in.ChainMS))
}

// Report waits for the sides and the chain.
//
//qflow:step flow=critical depends=Side,Chain4
func Report(ctx context.Context, in Critical, sides []int, links int) (int, error) {
	return len(sides) + links, sleep(ctx, ms(in.ReportMS))
}

// Hang is the input of flow hang: Fetch takes FetchMS, except that with
// Hang set its first call for Token never returns by itself (it waits
// for its context: the step timeout). The flow's own timeout is 10s, so a
// hang costs 10s plus a retry unless a shorter timeout was learned.
//
//qflow:flow hang backoff=200ms timeout=10s
type Hang struct {
	FetchMS int    `json:"fetch_ms"`
	Hang    bool   `json:"hang"`
	Token   string `json:"token"`
}

// hung holds the tokens whose first Fetch call has hung.
var hung sync.Map

//qflow:step flow=hang
func Fetch(ctx context.Context, in Hang) (int, error) {
	if _, again := hung.LoadOrStore(in.Token, true); in.Hang && !again {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return in.FetchMS, sleep(ctx, ms(in.FetchMS))
}

//qflow:step flow=hang depends=Fetch
func Use(ctx context.Context, n int) (int, error) { return n, sleep(ctx, 10*time.Millisecond) }

// Stragglers is the input of flow stragglers: Fan makes Width calls, and
// each of three stages maps over the previous one's results; a call takes
// CallMS, but one in SlowOneIn (drawn from Seed's sequence, shared by the
// process) takes SlowMS. The calls are idempotent, so a worker at the
// aggressive level may hedge them.
//
//qflow:flow stragglers
type Stragglers struct {
	Width     int `json:"width"`
	CallMS    int `json:"call_ms"`
	SlowMS    int `json:"slow_ms"`
	SlowOneIn int `json:"slow_one_in"`
}

// Call is one call of a stage.
type Call struct {
	CallMS    int `json:"call_ms"`
	SlowMS    int `json:"slow_ms"`
	SlowOneIn int `json:"slow_one_in"`
}

var (
	rngMu sync.Mutex
	rng   = rand.New(rand.NewPCG(7, 7))
	// Calls counts the calls of the stages' handlers, hedges included.
	Calls atomic.Int64
)

// Seed restarts the sequence that decides which calls are slow.
func Seed(seed uint64) {
	rngMu.Lock()
	defer rngMu.Unlock()
	rng = rand.New(rand.NewPCG(seed, seed))
}

func call(ctx context.Context, c Call) (Call, error) {
	Calls.Add(1)
	d := c.CallMS
	rngMu.Lock()
	if c.SlowOneIn > 0 && rng.IntN(c.SlowOneIn) == 0 {
		d = c.SlowMS
	}
	rngMu.Unlock()
	return c, sleep(ctx, ms(d))
}

//qflow:step flow=stragglers
func Fan(ctx context.Context, in Stragglers) ([]Call, error) {
	out := make([]Call, in.Width)
	for i := range out {
		out[i] = Call{CallMS: in.CallMS, SlowMS: in.SlowMS, SlowOneIn: in.SlowOneIn}
	}
	return out, nil
}

//qflow:step flow=stragglers depends=Fan map idempotent
func Stage1(ctx context.Context, c Call) (Call, error) { return call(ctx, c) }

//qflow:step flow=stragglers depends=Stage1 map idempotent
func Stage2(ctx context.Context, c Call) (Call, error) { return call(ctx, c) }

//qflow:step flow=stragglers depends=Stage2 map idempotent
func Stage3(ctx context.Context, c Call) (Call, error) { return call(ctx, c) }
