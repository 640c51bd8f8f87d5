package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	qflow "github.com/quantumflow/qflow/runtime"
)

// TestRunPastDeadlineHandsNothingOut: a run whose deadline passes while no
// worker is up is cancelled by the first worker that comes up, and none of
// its tasks reaches a handler.
func TestRunPastDeadlineHandsNothingOut(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	def, err := qflow.NewFlow("late").
		Step("a", qflow.StepDef{}).
		Step("b", qflow.StepDef{}).
		Step("c", qflow.StepDef{DependsOn: []string{"a", "b"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.DefineFlow(ctx, def); err != nil {
		t.Fatal(err)
	}
	id, err := e.client.StartRun(ctx, "late", 1, &qflow.StartOptions{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // no worker: the deadline passes
	var calls atomic.Int32
	h := func(context.Context, *qflow.Task) (json.RawMessage, error) {
		calls.Add(1)
		return json.RawMessage(`1`), nil
	}
	e.startWorker(def, map[string]qflow.Handler{"a": h, "b": h, "c": h}, &qflow.WorkerOptions{PollInterval: 50 * time.Millisecond})
	_, err = e.client.WaitRun(ctx, id)
	var re *qflow.RunError
	if !errors.As(err, &re) || re.Status != qflow.StatusCancelled || !strings.Contains(re.Message, "timed out") {
		t.Fatalf("WaitRun: %v; want the run cancelled for its timeout", err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d handler calls for a run past its deadline; want 0", n)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE attempts > 0`, 0)
}

// TestOutageShorterThanLeaseRunsNothingTwice: the connection between a
// worker and the server is cut for 0.75 × its lease while a handler
// finishes. The worker keeps trying to record the result while the lease
// can still be its own, records it once the connection is back, and a
// second worker, polling all along, never runs the task again.
func TestOutageShorterThanLeaseRunsNothingTwice(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	const lease = 6 * time.Second // heartbeats every second
	px := newProxy(t, e.db.URL)
	cfg, err := pgxpool.ParseConfig(e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.TLSConfig, cfg.ConnConfig.Fallbacks = "127.0.0.1", px.port(), nil, nil
	cfg.ConnConfig.ConnectTimeout = time.Second
	proxied, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxied.Close)

	def := single("blip", qflow.StepOptions{})
	var runs atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	h := map[string]qflow.Handler{"only": func(ctx context.Context, _ *qflow.Task) (json.RawMessage, error) {
		if runs.Add(1) == 1 {
			close(started)
			<-release
		}
		return json.RawMessage(`"done"`), nil
	}}
	a := qflow.NewWorker(proxied, &qflow.WorkerOptions{Lease: lease, PollInterval: 50 * time.Millisecond, Logger: quiet()})
	if err := a.Register(def, h); err != nil {
		t.Fatal(err)
	}
	actx, stopA := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(actx) }()
	defer func() { stopA(); <-aDone }()

	run, err := e.client.StartFlow(ctx, def, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler never started")
	}
	// The second worker polls the same queue directly, ready to take the
	// task over should its lease lapse.
	e.startWorker(def, h, &qflow.WorkerOptions{PollInterval: 50 * time.Millisecond})

	px.cut()
	close(release) // the handler finishes while the server is unreachable
	time.Sleep(lease * 3 / 4)
	px.restore()

	out, err := run.Wait(ctx)
	if err != nil || string(out) != `{"only": "done"}` {
		t.Fatalf("run: %s, %v", out, err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the handler ran %d times; want once", n)
	}
	assertCount(t, e, `SELECT count(*) FROM qflow.step_tasks WHERE status = 'completed' AND attempts = 1`, 1)
}

// proxy forwards TCP connections to a PostgreSQL server and can cut them
// all, and refuse new ones, for a while.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	dial   func() (net.Conn, error)
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
	closed bool
}

func newProxy(t *testing.T, url string) *proxy {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	host, port := cfg.ConnConfig.Host, cfg.ConnConfig.Port
	dial := func() (net.Conn, error) { return net.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(port))) }
	if strings.HasPrefix(host, "/") {
		dial = func() (net.Conn, error) { return net.Dial("unix", fmt.Sprintf("%s/.s.PGSQL.%d", host, port)) }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, dial: dial}
	go p.serve()
	t.Cleanup(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		ln.Close()
		p.cut()
	})
	return p
}

func (p *proxy) port() uint16 { return uint16(p.ln.Addr().(*net.TCPAddr).Port) }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := p.dial()
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(s, c); s.Close() }()
		go func() { _, _ = io.Copy(c, s); c.Close() }()
	}
}

// cut closes every forwarded connection and refuses new ones until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
