package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	qflow "github.com/quantumflow/qflow/runtime"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A run started while no worker serves its flow: WaitRun says so once in
// the log, and GetRun reports it, until a worker comes.
func TestRunNobodyServes(t *testing.T) {
	qflow.ShortenUnserved(t, 50*time.Millisecond)
	e := newEnv(t)
	var logs syncBuffer
	c := qflow.NewClient(e.db.Pool, &qflow.ClientOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer c.Close()
	def, h := chain3(t, "unserved")
	ctx := ctxT(t, 30*time.Second)
	run, err := c.StartFlow(ctx, def, map[string]int{"v": 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
	_, err = c.WaitRun(wctx, run.ID)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitRun: %v; want the deadline", err)
	}
	if n := strings.Count(logs.String(), "no live worker serves"); n != 1 {
		t.Errorf("%d warnings in the log, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "flow=unserved") {
		t.Errorf("the warning does not name the flow:\n%s", logs.String())
	}
	got, err := c.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Unserved {
		t.Errorf("GetRun of a run nobody serves: Unserved false")
	}

	w := e.startWorker(def, h, nil)
	waitFor(t, w.Local)
	if got, err = c.GetRun(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	if got.Status == qflow.StatusStarted && got.Unserved {
		t.Errorf("GetRun with a live worker: Unserved true")
	}
	if _, err := c.WaitRun(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
}
