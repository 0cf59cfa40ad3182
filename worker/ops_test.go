package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/workflows"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// httpGet returns the status and body of GET url (with a bearer token when
// one is given).
func httpGet(url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// series is what a scrape exports: every sample name (histograms as
// _bucket, _sum, _count) with the label names it carries.
type series map[string]map[string]bool

func scrape(t testing.TB, url, token string) series {
	t.Helper()
	code, body, err := httpGet(url, token)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, "GET %s: %s", url, body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err, "parse the scrape of %s", url)
	out := series{}
	add := func(name string, m *dto.Metric, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for _, l := range m.GetLabel() {
			out[name][l.GetName()] = true
		}
		for _, l := range extra {
			out[name][l] = true
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out
}

// promQuery is one dashboard expression's metric names and the labels it
// groups by.
type promQuery struct {
	expr    string
	metrics []string
	by      []string
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "offset": true, "bool": true}
)

// parsePromQL finds the metric names of a PromQL expression: identifiers
// outside strings, label matchers, ranges and groupings that are neither
// functions (followed by a parenthesis) nor keywords nor numbers.
func parsePromQL(expr string) promQuery {
	q := promQuery{expr: expr}
	s := promString.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRange.ReplaceAllString(s, " ")
	for _, g := range promGrouping.FindAllStringSubmatch(s, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				q.by = append(q.by, l)
			}
		}
	}
	s = promGrouping.ReplaceAllString(s, " ")
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " ")
		if promKeywords[id] || strings.HasPrefix(rest, "(") {
			continue
		}
		q.metrics = append(q.metrics, id)
	}
	return q
}

func TestParsePromQL(t *testing.T) {
	q := parsePromQL(`histogram_quantile(0.95, sum by (le, task_queue) (rate(temporal_x_seconds_bucket{kind="a(b)"}[5m]))) / on (job) max(up) and foo_total`)
	require.Equal(t, []string{"temporal_x_seconds_bucket", "up", "foo_total"}, q.metrics)
	require.Equal(t, []string{"le", "task_queue", "job"}, q.by)
}

// dashboardQueries reads every target expression of the Grafana dashboard.
func dashboardQueries(t testing.TB) []promQuery {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "forewarm.json"))
	require.NoError(t, err)
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	var out []promQuery
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			q := parsePromQL(tg.Expr)
			require.NotEmpty(t, q.metrics, "panel %q: no metric in %q", p.Title, tg.Expr)
			out = append(out, q)
		}
	}
	return out
}

// checkDashboard fails for every metric the dashboard queries that no
// scrape exports, and every label it groups by that none of its metrics
// carries (le is a histogram's; instance and job are added by Prometheus).
func checkDashboard(t testing.TB, scrapes ...series) {
	t.Helper()
	all := series{}
	for _, s := range scrapes {
		for name, labels := range s {
			if all[name] == nil {
				all[name] = map[string]bool{}
			}
			for l := range labels {
				all[name][l] = true
			}
		}
	}
	var names []string
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	checked := 0
	for _, q := range dashboardQueries(t) {
		for _, m := range q.metrics {
			if _, ok := all[m]; !ok {
				t.Errorf("the dashboard queries %s (in %q), which no program exports", m, q.expr)
			}
			checked++
		}
		for _, l := range q.by {
			if l == "instance" || l == "job" {
				continue
			}
			if !slices.ContainsFunc(q.metrics, func(m string) bool { return all[m][l] }) {
				t.Errorf("the dashboard groups by %q in %q, a label none of %v carries", l, q.expr, q.metrics)
			}
		}
	}
	t.Logf("%d metric references of the dashboard checked against %d exported series names", checked, len(names))
	if t.Failed() {
		t.Logf("exported: %s", strings.Join(names, " "))
	}
}

// TestDashboardMetricsAreExported runs the real worker program (this test
// binary as a child process) and a host agent, lets a loop predict,
// prepare and serve, then scrapes both: every metric and grouping label
// deploy/grafana/forewarm.json queries must be there. It also checks the
// probes and that SIGTERM stops the worker cleanly.
func TestDashboardMetricsAreExported(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-o"
	k.loadHistory([]string{app}, []int{2}, 600)
	agent := k.startAgent("ops-host", 2048, 1, 0)
	addr := freeAddr(t)
	proc := k.startWorkerProcess("FOREWARM_METRICS_LISTEN=" + addr)
	k.waitFor("the worker's /readyz", 60*time.Second, func() bool {
		code, _, err := httpGet("http://"+addr+"/readyz", "")
		return err == nil && code == http.StatusOK
	})
	code, body, err := httpGet("http://"+addr+"/healthz", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)

	k.trainedModel()
	k.startLoop(app, workflows.Policy{Threshold: 0, HorizonBins: 2, TopN: 1, LeaseTTL: 2 * time.Second, MaxShadowMS: 5000, SampleMB: 1})
	k.waitFor("a lease", 60*time.Second, func() bool { return len(k.status(app).Leases) > 0 })
	k.request(app)
	k.waitFor("predictions, preparations and serves in the worker's metrics", 30*time.Second, func() bool {
		s := scrape(t, "http://"+addr+"/metrics", "")
		_, p := s["forewarm_predictions_total"]
		_, e := s["forewarm_preparation_events_total"]
		_, c := s["forewarm_champion_model_info"]
		_, a := s["temporal_activity_execution_latency_seconds_bucket"]
		return p && e && c && a
	})
	k.stopLoop(app)
	worker := scrape(t, "http://"+addr+"/metrics", "")
	host := scrape(t, agent.url+api.PathPrometheus, hostToken("ops-host"))
	checkDashboard(t, worker, host)

	// SIGTERM: the worker stops polling, lets activities finish, exits 0.
	require.NoError(t, proc.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- proc.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "the worker's exit after SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop within 30 s of SIGTERM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := net.Dialer{}
	if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
		c.Close()
		t.Error(fmt.Sprintf("the metrics endpoint %s still answers after the worker stopped", addr))
	}
}
