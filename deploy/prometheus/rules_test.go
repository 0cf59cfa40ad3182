// Package prometheus_test checks alerts.yaml the way Prometheus loads it
// (its rule-file parser and PromQL parser) and checks every Forewarm
// metric that the rules and the Grafana dashboard query against the
// series the worker, the host agent and the gateway register, so a renamed
// metric fails here rather than as a silent alert or an empty panel.
package prometheus_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/gateway"
	"github.com/forewarm/forewarm/internal/telemetry"
	"github.com/forewarm/forewarm/store/records"
)

const rulesFile = "alerts.yaml"

var dashboardFile = filepath.Join("..", "grafana", "forewarm.json")

// Series the programs register but only create at run time: the Temporal
// SDK's, and Go's and the process's. worker/ops_test.go checks the
// dashboard's against a real worker's scrape.
var runtimePrefixes = []string{"temporal_", "go_", "process_"}

func promParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// metricNames are the metric names an expression selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := promParser().ParseExpr(expr)
	if err != nil {
		t.Errorf("%q does not parse: %v", expr, err)
		return nil
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					name = m.Value
				}
			}
			if name != "" {
				out = append(out, name)
			}
		}
		return nil
	})
	if len(out) == 0 {
		t.Errorf("%q selects no metric", expr)
	}
	return out
}

func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, promParser(), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatalf("%s: no rule group", rulesFile)
	}
	return groups
}

func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}

// Every rule is an alert that waits (for:), says how bad it is and what
// happened, in an expression Prometheus accepts.
func TestAlertRulesLoad(t *testing.T) {
	groups := loadRules(t)
	var names []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				t.Errorf("group %s: a rule without alert (recording rule %q): this file holds alerts only", g.Name, r.Record)
				continue
			}
			names = append(names, name)
			if r.For <= 0 {
				t.Errorf("alert %s: no for: (one bad scrape would page)", name)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alert %s: severity label %q, want critical or warning", name, s)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", name, a)
				}
			}
			metricNames(t, r.Expr)
		}
	}
	// What the operator asked to be told about.
	for _, want := range []string{"ForewarmDecisionLagOverSLO", "ForewarmStoreWriteErrors", "ForewarmHostListStale",
		"ForewarmAgentRefusingForCapacity", "ForewarmWorkerNotReady", "ForewarmNoLoops", "ForewarmWasteRatioHigh"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s has no alert %s", rulesFile, want)
		}
	}
}

// registered is every series name the worker, a host agent and the
// gateway export once each of their metrics has been used, histograms as
// their _bucket, _sum and _count.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	addFamilies := func(fams map[string]*dto.MetricFamily) {
		for name, f := range fams {
			out[name] = true
			if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY {
				out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
			}
		}
	}
	scrape := func(who string, h http.Handler, path string) {
		srv := httptest.NewServer(h)
		defer srv.Close()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("scrape the %s: %v", who, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape the %s: %d %v", who, resp.StatusCode, err)
		}
		tp := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := tp.TextToMetricFamilies(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("parse the %s's scrape: %v", who, err)
		}
		addFamilies(fams)
	}

	// The worker: each metric used once, as a running worker does.
	m, err := telemetry.New()
	if err != nil {
		t.Fatal(err)
	}
	m.Log = slog.New(slog.DiscardHandler)
	m.Prediction("prepare")
	for _, e := range records.Events {
		m.PreparationEvent(records.PreparationEvent{Event: e, MemoryMB: 1, HeldSeconds: 1})
	}
	m.Serve(true)
	m.StoreError("requests")
	m.HostList(time.Second, true)
	m.Champion("demand", "v1")
	m.Decisions().Decided(time.Second, 1, false, time.Minute)
	one := func() float64 { return 1 }
	m.Watch(telemetry.WatchStats{Plans: one, Checks: one, Wakes: map[string]func() float64{"arrival": one}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // one count, then it returns
	m.WatchLoops(ctx, func(context.Context, string) (int64, error) { return 1, nil }, "Loop", "State", []string{"sleeping"}, time.Second, m.Log)
	scrape("worker", m.Handler(func(context.Context) error { return nil }), "/metrics")

	// A host agent.
	a, err := agent.New(agent.Config{HostID: "rules-host", DataDir: t.TempDir(), MemoryMB: 64, DiskMB: 64, CPUMilli: 1000,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	scrape("host agent", a.MetricsHandler(), "/metrics")

	// The gateway.
	up, _ := url.Parse("http://127.0.0.1:1")
	g, err := gateway.New(context.Background(), gateway.Config{ID: "rules-gw", Bin: time.Minute, Upstreams: map[string]*url.URL{"app": up}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(context.Background())
	scrape("gateway", g, gateway.PathPrefix+"metrics")
	return out
}

// unknown lists the Forewarm metrics exprs select that none of the
// programs registers, and the names that are neither Forewarm's nor
// created at run time.
func unknown(t *testing.T, have map[string]bool, exprs []string) []string {
	var out []string
	for _, e := range exprs {
		for _, n := range metricNames(t, e) {
			if have[n] || slices.ContainsFunc(runtimePrefixes, func(p string) bool { return strings.HasPrefix(n, p) }) {
				continue
			}
			out = append(out, n+" (in "+strings.Join(strings.Fields(e), " ")+")")
		}
	}
	return out
}

func TestRulesAndDashboardQueryRegisteredMetrics(t *testing.T) {
	have := registered(t)
	var exprs []string
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	nRules := len(exprs)
	exprs = append(exprs, dashboardExprs(t)...)
	for _, u := range unknown(t, have, exprs) {
		t.Errorf("no program registers %s", u)
	}
	if t.Failed() {
		var names []string
		for n := range have {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Logf("registered: %s", strings.Join(names, " "))
	}
	t.Logf("%d rule and %d dashboard expressions checked against %d registered series names", nRules, len(exprs)-nRules, len(have))

	// The check itself: a metric under its old name is caught.
	if u := unknown(t, have, []string{`sum(rate(forewarm_wasted_mb_seconds_total[5m]))`, `forewarm_agent_reserved_cpu_millicores`}); len(u) != 2 {
		t.Errorf("renamed metrics not caught: %v", u)
	}
}
