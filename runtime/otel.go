package runtime

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// OpenTelemetry: spans and metrics, off unless the caller passes a
// TracerProvider or MeterProvider. With neither, the engine's hot path
// makes no OpenTelemetry call at all: every use is behind a nil check.

// instrumentationName names the tracer and meter.
const instrumentationName = "github.com/quantumflow/qflow/runtime"

// Span and metric attribute keys.
const (
	attrFlow      = attribute.Key("qflow.flow")
	attrStep      = attribute.Key("qflow.step")
	attrTaskIndex = attribute.Key("qflow.task.index")
	attrAttempt   = attribute.Key("qflow.task.attempt")
	attrRunID     = attribute.Key("qflow.run.id")
	attrRunCount  = attribute.Key("qflow.run.count")
	attrRunStatus = attribute.Key("qflow.run.status")
	attrPermanent = attribute.Key("qflow.task.permanent")
	attrSkipped   = attribute.Key("qflow.task.skipped")
	attrSnoozed   = attribute.Key("qflow.task.snoozed")
	attrSource    = attribute.Key("qflow.source")
)

// propagator carries trace context from StartRun to the workers: W3C
// traceparent and tracestate, whatever global propagator the program set,
// so that a client and a worker in different programs always agree.
var propagator propagation.TextMapPropagator = propagation.TraceContext{}

// tracerFrom returns the engine's tracer from tp, or nil when tp is nil or
// the no-op provider.
func tracerFrom(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	if _, noop := tp.(tracenoop.TracerProvider); noop {
		return nil
	}
	return tp.Tracer(instrumentationName)
}

// meterFrom returns the engine's meter from mp, or nil when mp is nil or
// the no-op provider.
func meterFrom(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		return nil
	}
	if _, noop := mp.(metricnoop.MeterProvider); noop {
		return nil
	}
	return mp.Meter(instrumentationName)
}

// traceContext is the trace context to store with runs started from ctx:
// the W3C fields of ctx's span, or nil when ctx carries no valid span.
func traceContext(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	if len(c) == 0 {
		return nil
	}
	return c
}

// remoteParent returns ctx with the span context stored with a task's run
// (raw: the JSON object of traceContext) as its remote parent.
func remoteParent(ctx context.Context, raw []byte) context.Context {
	if len(raw) == 0 {
		return ctx
	}
	var c propagation.MapCarrier
	if json.Unmarshal(raw, &c) != nil {
		return ctx
	}
	return propagator.Extract(ctx, c)
}

// endSpan records err (if any) on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// workerMetrics are a worker's instruments. A nil *workerMetrics records nothing.
type workerMetrics struct {
	started, completed, failed metric.Int64Counter
	duration                   metric.Float64Histogram
	leaseExpired               metric.Int64Counter
	hedged                     metric.Int64Counter
	depth                      metric.Int64ObservableGauge
	// Attribute sets for the lease counter, made once.
	fromHeartbeat, fromUpkeep metric.MeasurementOption
}

func newWorkerMetrics(m metric.Meter) (*workerMetrics, error) {
	if m == nil {
		return nil, nil
	}
	var wm workerMetrics
	var err error
	if wm.started, err = m.Int64Counter("qflow.task.started", metric.WithUnit("{task}"),
		metric.WithDescription("Task attempts a worker started.")); err != nil {
		return nil, err
	}
	if wm.completed, err = m.Int64Counter("qflow.task.completed", metric.WithUnit("{task}"),
		metric.WithDescription("Task attempts whose handler succeeded (the result is then recorded unless the task was taken away meanwhile).")); err != nil {
		return nil, err
	}
	if wm.failed, err = m.Int64Counter("qflow.task.failed", metric.WithUnit("{task}"),
		metric.WithDescription("Task attempts whose handler failed (retried or not), timed out or panicked. "+
			"Attempts stopped by the engine (qflow.task.lease_expiries) or by shutdown, and attempts whose step's condition "+
			"was false (skipped), count as neither completed nor failed.")); err != nil {
		return nil, err
	}
	if wm.duration, err = m.Float64Histogram("qflow.task.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of task attempts' handlers (qflow.task.outcome completed or failed), and of "+
			"conditions that skipped their step (outcome skipped)."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)); err != nil {
		return nil, err
	}
	if wm.leaseExpired, err = m.Int64Counter("qflow.task.lease_expiries", metric.WithUnit("{task}"),
		metric.WithDescription("Tasks taken from a worker: qflow.source=heartbeat counts handlers a heartbeat stopped "+
			"(lease lost, or run cancelled or finished), qflow.source=upkeep tasks failed because their lease expired with no attempts left.")); err != nil {
		return nil, err
	}
	if wm.hedged, err = m.Int64Counter("qflow.task.hedged", metric.WithUnit("{task}"),
		metric.WithDescription("Second copies of handlers started to hedge a straggler (WorkerOptions.Optimize at aggressive, idempotent steps).")); err != nil {
		return nil, err
	}
	if wm.depth, err = m.Int64ObservableGauge("qflow.queue.depth", metric.WithUnit("{task}"),
		metric.WithDescription("Queued tasks per flow (read from the database at most every few seconds).")); err != nil {
		return nil, err
	}
	wm.fromHeartbeat = metric.WithAttributeSet(attribute.NewSet(attrSource.String("heartbeat")))
	wm.fromUpkeep = metric.WithAttributeSet(attribute.NewSet(attrSource.String("upkeep")))
	return &wm, nil
}

// stepMetrics are a step's metric attributes, made once per step so that
// recording a task allocates nothing.
type stepMetrics struct {
	attrs, ok, fail, skip metric.MeasurementOption
}

func newStepMetrics(flow, step string) stepMetrics {
	base := []attribute.KeyValue{attrFlow.String(flow), attrStep.String(step)}
	return stepMetrics{
		attrs: metric.WithAttributeSet(attribute.NewSet(base...)),
		ok:    metric.WithAttributeSet(attribute.NewSet(append(base, attribute.String("qflow.task.outcome", "completed"))...)),
		fail:  metric.WithAttributeSet(attribute.NewSet(append(base, attribute.String("qflow.task.outcome", "failed"))...)),
		skip:  metric.WithAttributeSet(attribute.NewSet(append(base, attribute.String("qflow.task.outcome", "skipped"))...)),
	}
}

// depthInterval is the least time between two reads of queue depth.
const depthInterval = 5 * time.Second

// depthCache reads queue depth per flow at most every depthInterval.
type depthCache struct {
	mu     sync.Mutex
	at     time.Time
	counts map[int]int64 // flow id -> queued tasks
}

const sqlQueueDepth = `SELECT flow_id, count(*) FROM qflow.step_tasks
	WHERE flow_id = ANY($1::integer[]) AND finished_at IS NULL AND status = 'queued' GROUP BY flow_id`

// observeDepth is the queue depth gauge's callback.
func (w *Worker) observeDepth(ctx context.Context, o metric.Observer) error {
	c := &w.depth
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= depthInterval {
		ids := make([]int32, len(w.flows))
		for i, f := range w.flows {
			ids[i] = int32(f.id)
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rows, err := w.pool.Query(qctx, sqlQueueDepth, ids)
		counts := map[int]int64{}
		if err == nil {
			var id int
			var n int64
			for rows.Next() {
				if err = rows.Scan(&id, &n); err != nil {
					break
				}
				counts[id] = n
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		cancel()
		if err != nil {
			w.log.Warn("qflow: read queue depth for metrics", "worker_id", w.id, "error", err)
		} else {
			c.at, c.counts = time.Now(), counts
		}
	}
	for _, f := range w.flows {
		if c.counts != nil {
			o.ObserveInt64(w.met.depth, c.counts[f.id], metric.WithAttributeSet(attribute.NewSet(attrFlow.String(f.def.Slug))))
		}
	}
	return nil
}
