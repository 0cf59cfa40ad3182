package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/forewarm/forewarm/internal/batch"
	"github.com/forewarm/forewarm/store/records"
)

// promMetrics are the gateway's Prometheus series. No label carries an
// application: a fleet has too many (they are in the recorded requests).
type promMetrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.HistogramVec
	starts        *prometheus.CounterVec
	unknown       prometheus.Counter
	refreshErrors prometheus.Counter
	retried       prometheus.Counter
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newPromMetrics(g *Gateway) *promMetrics {
	p := &promMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "forewarm_gateway_request_duration_seconds", Help: "Requests from arrival to last byte, by outcome (warm, cold, cold-joined, failed).",
			Buckets: latencyBuckets,
		}, []string{"outcome"}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forewarm_gateway_cold_starts_total", Help: "Instance starts on a host, by result (ok or the agent's refusal code).",
		}, []string{"result"}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forewarm_gateway_unknown_app_requests_total", Help: "Requests for an application no host runs (answered 404).",
		}),
		refreshErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forewarm_gateway_table_refresh_errors_total", Help: "Routing table refreshes in which a host did not answer.",
		}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forewarm_gateway_retried_requests_total", Help: "Requests sent a second time (a stale entry, or an instance that never got them).",
		}),
	}
	instances := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "forewarm_gateway_instances", Help: "Ready instances in the routing table.",
	}, func() float64 {
		g.t.mu.RLock()
		defer g.t.mu.RUnlock()
		n := 0
		for _, ins := range g.t.byApp {
			n += len(ins)
		}
		return float64(n)
	})
	p.reg.MustRegister(p.requests, p.starts, p.unknown, p.refreshErrors, p.retried, instances,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return p
}

func (p *promMetrics) observe(o *records.GatewayRequest) {
	p.requests.WithLabelValues(o.Outcome).Observe(o.TotalMS / 1000)
	if o.Retried {
		p.retried.Inc()
	}
}

// serveOwn answers the gateway's own endpoints: health, readiness (the
// routing table has been read), Prometheus metrics and the routing table.
func (g *Gateway) serveOwn(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathPrefix + "healthz":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case PathPrefix + "readyz":
		g.closeMu.RLock()
		closing := g.closing
		g.closeMu.RUnlock()
		if closing || !g.t.ready() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	case PathPrefix + "metrics":
		promhttp.HandlerFor(g.prom.reg, promhttp.HandlerOpts{Registry: g.prom.reg}).ServeHTTP(w, r)
	case PathPrefix + "table":
		writeJSON(w, http.StatusOK, g.t.view())
	default:
		writeError(w, http.StatusNotFound, "not_found", "", "no endpoint %s (the gateway's are healthz, readyz, metrics and table under %s)", r.URL.Path, PathPrefix)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// TableEntry is one ready instance in the routing table's view.
type TableEntry struct {
	App           string `json:"app"`
	Host          string `json:"host"`
	Lease         string `json:"lease"`
	InFlight      int64  `json:"in_flight"`
	MaxConcurrent int    `json:"max_concurrent"`
}

// ready says the table has been read from at least one host.
func (t *table) ready() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, h := range t.hosts {
		if h.err == nil && !h.seen.IsZero() {
			return true
		}
	}
	return false
}

func (t *table) view() []TableEntry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []TableEntry
	for app, ins := range t.byApp {
		for _, in := range ins {
			if !in.dead.Load() {
				out = append(out, TableEntry{App: app, Host: in.host.ID, Lease: in.lease, InFlight: in.inflight.Load(), MaxConcurrent: in.maxConc})
			}
		}
	}
	return out
}

// outcomeBatch writes the recorded requests in batches, keeping at most
// 100,000 while the store is down.
type outcomeBatch = batch.Batcher[records.GatewayRequest]

func newOutcomeBatch(write func(context.Context, []records.GatewayRequest) error, every time.Duration, log *slog.Logger) *outcomeBatch {
	return batch.New(write, every, 100_000, log)
}
