// Package telemetry is what an operator scrapes and probes on a worker:
// Prometheus metrics (the Temporal SDK's own, through its metrics handler,
// and Forewarm's: loops by state, predictions, preparations by outcome,
// warm and cold serves, wasted reserved memory-time, the champion model)
// and the /healthz and /readyz endpoints Kubernetes probes. Series are in
// base units (bytes, seconds) and no label names an application or a
// lease: a fleet has too many and they come and go (per-application
// figures are in ClickHouse's history tables).
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	tempotel "go.temporal.io/sdk/contrib/opentelemetry"

	"github.com/forewarm/forewarm/store/records"
)

// Names of Forewarm's own metrics (the dashboard queries these).
const (
	MetricLoops         = "forewarm_loops"
	MetricPredictions   = "forewarm_predictions_total"
	MetricPrepEvents    = "forewarm_preparation_events_total"
	MetricServes        = "forewarm_serves_total"
	MetricWasted        = "forewarm_wasted_byte_seconds_total"
	MetricChampion      = "forewarm_champion_model_info"
	MetricStoreErrors   = "forewarm_store_write_errors_total"
	MetricHostListAge   = "forewarm_host_list_age_seconds"
	MetricHostListStale = "forewarm_host_list_stale_total"
	MetricReady         = "forewarm_worker_ready"
)

// mib is the bytes of the records' MB (memory_mb is in MiB, as the
// agents count it).
const mib = 1 << 20

// secondsBuckets suit the SDK's latencies (its timers are in seconds; the
// OpenTelemetry default buckets are meant for milliseconds).
var secondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Metrics is one worker's registry.
type Metrics struct {
	Registry *prometheus.Registry
	// SDK is the Temporal client's metrics handler (client.Options.MetricsHandler).
	SDK client.MetricsHandler

	predictions *prometheus.CounterVec
	prepEvents  *prometheus.CounterVec
	serves      *prometheus.CounterVec
	wasted      prometheus.Counter
	champion    *prometheus.GaugeVec
	storeErrors *prometheus.CounterVec
	hostAge     prometheus.Gauge
	hostStale   prometheus.Counter

	mu        sync.Mutex
	champions map[string]string // kind -> version

	// Log receives the readiness checks' details (nil: slog's default).
	Log *slog.Logger
}

// New builds the registry: Go and process collectors, the SDK's metrics
// through OpenTelemetry's Prometheus exporter, and Forewarm's.
func New() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	seconds := sdkmetric.NewView(sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Unit: "s"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: secondsBuckets}})
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithView(seconds))
	m := &Metrics{
		Registry: reg,
		SDK: tempotel.NewMetricsHandler(tempotel.MetricsHandlerOptions{
			Meter:                provider.Meter("temporal-sdk-go"),
			UseMonotonicCounters: true,
			OnError:              func(error) {}, // a metric the exporter refuses is dropped, never a panic
		}),
		predictions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricPredictions,
			Help: "Predictions recorded, by the loop's decision."}, []string{"decision"}),
		prepEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricPrepEvents,
			Help: "Preparation events recorded, by event: reserved, validated, failed, claimed, extended, kept, released, expired."}, []string{"event"}),
		serves: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricServes,
			Help: "Requests served, warm (on a prepared lease) or cold."}, []string{"kind"}),
		wasted: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricWasted,
			Help: "Memory-time leases held without serving, in byte-seconds: counted when a lease ends (released, expired or failed: its life less the time the host measured it busy; claimed by a request: until the claim)."}),
		champion: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricChampion,
			Help: "1 for the champion model version this worker serves, by kind."}, []string{"kind", "version"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricStoreErrors,
			Help: "Failed writes of history rows to ClickHouse, by table."}, []string{"table"}),
		hostAge: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricHostListAge,
			Help: "Age of the host list the last preparation or cold serve used, s: above a few seconds, ClickHouse is unreachable and the last known list serves (for at most --host-list-max-stale)."}),
		hostStale: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricHostListStale,
			Help: "Host lists answered from the last known list because ClickHouse was unreachable."}),
		champions: map[string]string{},
	}
	reg.MustRegister(m.predictions, m.prepEvents, m.serves, m.wasted, m.champion, m.storeErrors, m.hostAge, m.hostStale)
	// Label values known in advance appear at zero before the first event.
	for _, k := range []string{"warm", "cold"} {
		m.serves.WithLabelValues(k)
	}
	for _, t := range []string{"predictions", "preparation_events", "requests"} {
		m.storeErrors.WithLabelValues(t)
	}
	return m, nil
}

// Prediction counts one recorded prediction. A nil *Metrics counts nothing.
func (m *Metrics) Prediction(decision string) {
	if m != nil {
		m.predictions.WithLabelValues(decision).Inc()
	}
}

// PreparationEvent counts one recorded preparation event and adds the
// lease's wasted memory-time (WastedByteSeconds) to the wasted total.
func (m *Metrics) PreparationEvent(e records.PreparationEvent) {
	if m == nil {
		return
	}
	m.prepEvents.WithLabelValues(e.Event).Inc()
	if w := WastedByteSeconds(e); w > 0 {
		m.wasted.Add(w)
	}
}

// WastedByteSeconds is the memory-time a lease held without serving, as
// the product counts waste (the simulator's: memory held while no request
// runs, preparation included), read off the event that ends the lease's
// life as a reservation: released, expired or failed, its whole held time
// less what the host measured it busy (BusyMBs); claimed (a lease a
// request took for itself, ended after it), the time until the claim. Other
// events, and end events without memory or held time, waste nothing here.
func WastedByteSeconds(e records.PreparationEvent) float64 {
	if e.MemoryMB <= 0 || e.HeldSeconds <= 0 {
		return 0
	}
	held := e.MemoryMB * e.HeldSeconds
	switch e.Event {
	case records.EventReleased, records.EventExpired, records.EventFailed:
		return max(0, held-e.BusyMBs) * mib
	case records.EventClaimed:
		return held * mib
	}
	return 0
}

// Serve counts one served request.
func (m *Metrics) Serve(warm bool) {
	if m == nil {
		return
	}
	kind := records.OutcomeCold
	if warm {
		kind = records.OutcomeWarm
	}
	m.serves.WithLabelValues(kind).Inc()
}

// StoreError counts a failed write to a table.
func (m *Metrics) StoreError(table string) {
	if m != nil {
		m.storeErrors.WithLabelValues(table).Inc()
	}
}

// HostList records the age of the host list an activity used, and
// whether it was a last-known one (ClickHouse unreachable).
func (m *Metrics) HostList(age time.Duration, stale bool) {
	if m == nil {
		return
	}
	m.hostAge.Set(age.Seconds())
	if stale {
		m.hostStale.Inc()
	}
}

// Champion records the champion version of a model kind.
func (m *Metrics) Champion(kind, version string) {
	if m == nil || version == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.champions[kind]; ok && old != version {
		m.champion.DeleteLabelValues(kind, old)
	}
	m.champions[kind] = version
	m.champion.WithLabelValues(kind, version).Set(1)
}

// Handler serves /metrics, /healthz (the process answers) and /readyz
// (ready(ctx) returns nil: the workers run and their services answer).
// They are unauthenticated: serve them on a listener only probes and
// scrapers reach (worker --metrics-listen). /readyz answers from the last
// check, run in the background at most every ReadyEvery however many
// probes arrive; its body is "ready" or "not ready" with, for an *Unready,
// the one word of its Part ("not ready: store"), never the error's detail
// (addresses, messages), which goes to the log when the state changes.
func (m *Metrics) Handler(ready func(context.Context) error) http.Handler {
	return m.handler(&readiness{check: ready, every: ReadyEvery, log: m.Log})
}

func (m *Metrics) handler(ready *readiness) http.Handler {
	// /readyz's answer as a series too, so an alert needs no probe of its
	// own; it reads the same bounded check.
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricReady,
		Help: "1 when the worker is ready (/readyz answers ready: its workers run, Temporal and ClickHouse answer), else 0."},
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
			defer cancel()
			if ready.state(ctx) != nil {
				return 0
			}
			return 1
		})
	if err := m.Registry.Register(g); err != nil {
		ready.logger().Warn("readiness gauge not registered", "metric", MetricReady, "err", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		if err := ready.state(ctx); err != nil {
			msg := "not ready"
			if p := part(err); p != "" {
				msg += ": " + p
			}
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
