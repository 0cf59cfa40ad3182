package agent

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/forewarm/forewarm/agent/api"
)

// counters are the agent's running totals (JSON and Prometheus both read
// them).
type counters struct {
	reserved, released, expired atomic.Int64
	servedWarm, servedCold      atomic.Int64
	replayed                    atomic.Int64
	fbConc, fbOversize          atomic.Int64
	extended, kept              atomic.Int64
}

// promMetrics is the agent's own Prometheus registry: latency histograms
// observed as calls happen, and a collector that turns the current
// Metrics() snapshot into gauges and counters at scrape time.
type promMetrics struct {
	reg     *prometheus.Registry
	prepare prometheus.Histogram
	shadow  prometheus.Histogram
	serve   *prometheus.HistogramVec
	refused prometheus.Counter
	// Process instances: how many ended by themselves, by reason (exit,
	// signal, oom); how many failed to start; proxied requests by outcome.
	instFailed      *prometheus.CounterVec
	instStartFailed prometheus.Counter
	instRequests    *prometheus.CounterVec
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newPromMetrics(a *Agent) *promMetrics {
	host := prometheus.Labels{"host": a.cfg.HostID}
	p := &promMetrics{
		reg: prometheus.NewRegistry(),
		prepare: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "forewarm_agent_prepare_seconds", Help: "Time to allocate a lease's memory and storage.",
			ConstLabels: host, Buckets: latencyBuckets,
		}),
		shadow: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "forewarm_agent_shadow_seconds", Help: "Duration of shadow requests.",
			ConstLabels: host, Buckets: latencyBuckets,
		}),
		serve: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "forewarm_agent_serve_seconds", Help: "Duration of served requests (set-up plus work), by warm or cold.",
			ConstLabels: host, Buckets: latencyBuckets,
		}, []string{"mode"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forewarm_agent_refused_total", Help: "Reserves and cold requests refused for lack of capacity.",
			ConstLabels: host,
		}),
		instFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forewarm_agent_instances_failed_total", Help: "Process instances that ended by themselves (their lease failed), by reason: exit, signal, oom.",
			ConstLabels: host,
		}, []string{"reason"}),
		instStartFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forewarm_agent_instance_starts_failed_total", Help: "Process instances that did not start, get ready or pass their shadow request.",
			ConstLabels: host,
		}),
		instRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forewarm_agent_instance_requests_total", Help: "Requests proxied to process instances, by outcome: answered (any status of the instance's), instance_failed, lease_busy, refused (other agent refusals).",
			ConstLabels: host,
		}, []string{"outcome"}),
	}
	for _, r := range []string{"exit", "signal", "oom"} {
		p.instFailed.WithLabelValues(r)
	}
	p.reg.MustRegister(p.prepare, p.shadow, p.serve, p.refused, p.instFailed, p.instStartFailed, p.instRequests, snapshotCollector{a: a, host: host},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return p
}

func (p *promMetrics) handler() http.Handler {
	return promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{Registry: p.reg})
}

// snapshotCollector exports Metrics() at scrape time, host-wide only: no
// series per lease or application (they would come and go with every
// lease); each live lease's use is in GET /v1/metrics (lease_use) and
// GET /v1/leases.
type snapshotCollector struct {
	a    *Agent
	host prometheus.Labels
}

type snapshotMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(m api.HostMetrics, c *counters) float64
}

func (s snapshotCollector) metrics() []snapshotMetric {
	g := func(name, help string, f func(m api.HostMetrics, c *counters) float64) snapshotMetric {
		return snapshotMetric{prometheus.NewDesc(name, help, nil, s.host), prometheus.GaugeValue, f}
	}
	c := func(name, help string, f func(m api.HostMetrics, c *counters) float64) snapshotMetric {
		return snapshotMetric{prometheus.NewDesc(name, help, nil, s.host), prometheus.CounterValue, f}
	}
	// Base units: bytes (the API's MB are MiB) and cores.
	const mb, milli = 1 << 20, 1000
	return []snapshotMetric{
		g("forewarm_host_cpu_utilization_ratio", "Busy share of all CPUs between the last two samples of /proc/stat.",
			func(m api.HostMetrics, _ *counters) float64 { return m.CPUUtil }),
		g("forewarm_host_memory_used_bytes", "MemTotal minus MemAvailable from /proc/meminfo, or the agent's cgroup usage when its limit is lower.",
			func(m api.HostMetrics, _ *counters) float64 { return m.MemUsedMB * mb }),
		g("forewarm_host_memory_available_bytes", "MemAvailable from /proc/meminfo, or what the agent's cgroup limit leaves when lower.",
			func(m api.HostMetrics, _ *counters) float64 { return m.MemAvailMB * mb }),
		g("forewarm_host_memory_pressure_ratio", "PSI memory 'some' avg10 as a fraction (0 without PSI).",
			func(m api.HostMetrics, _ *counters) float64 { return m.MemPressure }),
		g("forewarm_host_io_probe_latency_seconds", "Last 64 KiB write+fsync+read probe in the data folder.",
			func(m api.HostMetrics, _ *counters) float64 { return m.IOLatencyMS / 1000 }),
		g("forewarm_agent_reserved_memory_bytes", "Memory held by leases and cold requests.",
			func(m api.HostMetrics, _ *counters) float64 { return m.ReservedMemMB * mb }),
		g("forewarm_agent_reserved_disk_bytes", "Storage held by leases and cold requests.",
			func(m api.HostMetrics, _ *counters) float64 { return m.ReservedDiskMB * mb }),
		g("forewarm_agent_reserved_cpu_cores", "CPU reserved by leases and cold requests, in cores.",
			func(m api.HostMetrics, _ *counters) float64 { return float64(m.ReservedCPUMilli) / milli }),
		g("forewarm_agent_capacity_memory_bytes", "Memory the agent may hand out.",
			func(m api.HostMetrics, _ *counters) float64 { return m.CapacityMemMB * mb }),
		g("forewarm_agent_capacity_disk_bytes", "Storage the agent may hand out.",
			func(m api.HostMetrics, _ *counters) float64 { return m.CapacityDiskMB * mb }),
		g("forewarm_agent_capacity_cpu_cores", "CPU the agent may hand out, in cores.",
			func(m api.HostMetrics, _ *counters) float64 { return float64(m.CapacityCPUMilli) / milli }),
		g("forewarm_agent_leases", "Live leases (preparing, ready or claimed).",
			func(m api.HostMetrics, _ *counters) float64 { return float64(m.Leases) }),
		g("forewarm_agent_leases_ready", "Leases ready to be claimed.",
			func(m api.HostMetrics, _ *counters) float64 { return float64(m.LeasesReady) }),
		c("forewarm_agent_leases_reserved_total", "Leases prepared.",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.reserved.Load()) }),
		c("forewarm_agent_leases_released_total", "Leases released explicitly.",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.released.Load()) }),
		c("forewarm_agent_leases_expired_total", "Leases reaped after their TTL.",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.expired.Load()) }),
		c("forewarm_agent_served_warm_total", "Requests served on a prepared lease.",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.servedWarm.Load()) }),
		c("forewarm_agent_served_cold_total", "Requests served with resources allocated on the spot.",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.servedCold.Load()) }),
		c("forewarm_agent_served_replayed_total", "Retried serves answered with the first result (idempotent by request ID).",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.replayed.Load()) }),
		c("forewarm_agent_fallback_concurrency_total", "Requests naming a lease served cold because the lease already served its maximum in parallel.",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.fbConc.Load()) }),
		c("forewarm_agent_fallback_oversize_total", "Requests naming a lease served cold because they were larger than the lease.",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.fbOversize.Load()) }),
		c("forewarm_agent_leases_extended_total", "Lease extensions in place.",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.extended.Load()) }),
		c("forewarm_agent_leases_kept_total", "Cold instances kept as new leases after serving.",
			func(_ api.HostMetrics, c *counters) float64 { return float64(c.kept.Load()) }),
		c("forewarm_agent_lease_busy_byte_seconds_total", "Memory-time of leases with at least one request running on them, in byte-seconds (per lease: GET /v1/metrics lease_use).",
			func(m api.HostMetrics, _ *counters) float64 { return m.LeaseBusyMBs * mb }),
		c("forewarm_agent_lease_idle_byte_seconds_total", "Memory-time of ready leases with no request running on them, in byte-seconds (per lease: GET /v1/metrics lease_use).",
			func(m api.HostMetrics, _ *counters) float64 { return m.LeaseIdleMBs * mb }),
		g("forewarm_agent_lease_requests_in_flight", "Requests running on leases now, all leases together (each lease's in_flight: GET /v1/metrics lease_use).",
			func(m api.HostMetrics, _ *counters) float64 {
				n := 0
				for _, u := range m.LeaseUse {
					n += u.InFlight
				}
				return float64(n)
			}),
		g("forewarm_agent_tombstones", "Ended lease IDs remembered so late reserves are refused.",
			func(m api.HostMetrics, _ *counters) float64 { return float64(m.Tombstones) }),
	}
}

func (s snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range s.metrics() {
		ch <- m.desc
	}
}

func (s snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	snap := s.a.Metrics()
	for _, m := range s.metrics() {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(snap, &s.a.counters))
	}
}
