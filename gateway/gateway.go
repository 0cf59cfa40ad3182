// Package gateway is the request path: an HTTP server in front of the host
// agents' process instances. A request names its application by path
// prefix (/<app>/rest) or by host name (<app><HostSuffix>); the gateway
// sends it to a ready warm instance of the application when one exists,
// and otherwise starts one on the best-ranked host that runs the
// application and serves the request when the instance is ready.
//
// The routing table is kept from the agents' lease lists (every
// RefreshEvery), never read per request: a warm request costs no Temporal
// or ClickHouse round trip. A stale entry (an instance released since the
// last read) costs a retry: the agent answers gone and the request goes to
// the next instance or starts one (at most three tries in all). A request
// that never reached its instance (the agent could not connect to it) is
// retried the same way; one whose instance died while serving it gets a
// 502 with a JSON error.
//
// Concurrent requests for an application with no instance wait for one
// start instead of each starting their own (a cold start is shared, as
// Knative's activator buffers requests for a revision scaling from zero).
// An instance the gateway starts is a lease of its application with
// KeepTTL; Config.OnKept hands it to the application's prediction loop,
// which keeps or releases it like any instance.
//
// Per application and bin the gateway counts arrivals and writes them in
// batches (Config.Arrivals: the store's router arrivals, what loops in
// router mode read); each batch is named by the gateway's ID, its start
// and the bin, so a retried batch counts once and several gateways behind
// one load balancer add up. With Config.SpoolDir each counted request is
// also appended to a file before it is forwarded, so a gateway killed
// with bins not yet written loses no count: the next start writes them
// under the names the dead run used (a machine crash can still lose what
// the kernel had not written to disk). Per request it records the host, warm or
// cold, the latency split (queue, start, application), method, status and
// sizes (Config.Outcomes), in batches.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
)

// Config says where the gateway routes and where it reports.
type Config struct {
	// ID names this gateway in its arrival batches; each gateway behind a
	// load balancer has its own.
	ID    string
	Hosts HostSource
	Trust *client.Trust
	// Bin is the width of the arrival counts (the loops' bin).
	Bin time.Duration
	// RefreshEvery is how often the agents' lease lists are read (default
	// 500ms); their specs and free memory are read every 10 refreshes.
	RefreshEvery time.Duration
	// KeepTTL is the lease TTL of an instance the gateway starts (default
	// 10 minutes): the application's loop extends or releases it; the TTL
	// ends it when no loop does.
	KeepTTL time.Duration
	// StartTimeout bounds one cold start on one host (default 2 minutes).
	StartTimeout time.Duration
	// HostSuffix routes by host name: a request to <app><HostSuffix> (e.g.
	// ".apps.example.com") goes to app with its path unchanged.
	HostSuffix string
	// Arrivals writes a batch of arrival counts; Outcomes a batch of
	// request records; OnKept tells the application's loop about an
	// instance the gateway started. Each may be nil.
	Arrivals func(context.Context, store.ArrivalBatch) error
	Outcomes func(context.Context, []records.GatewayRequest) error
	OnKept   func(context.Context, Kept) error
	// SpoolDir, when set, keeps the arrival counts on disk so that a
	// killed gateway loses none (see spool.go): each counted request is
	// appended there before it is forwarded, and the next start writes
	// what a dead run left. It needs Arrivals. A process kill loses
	// nothing; a machine crash can lose what the kernel had not yet
	// written to disk.
	SpoolDir string
	// OutcomeEvery is how often outcomes are written (default 1s).
	OutcomeEvery time.Duration
	Logger       *slog.Logger
	// Upstreams are applications served elsewhere (e.g. a Kubernetes
	// Service the warm pods join): their requests are counted like any
	// other, for the loops, and passed on to the URL with the path after
	// the application's name. The serving platform decides warm or cold,
	// so no request record is written for them. With only upstreams, no
	// host source or agent trust is needed.
	Upstreams map[string]*url.URL
}

// Kept is an instance the gateway started for a request.
type Kept struct {
	App, Host, HostURL string
	RequestID          string
	Lease              api.Lease
}

// maxAttempts bounds the tries of one request: a stale entry (an instance
// released since the table was read) or an instance the request never
// reached costs one more, and the last goes to a new instance when no
// other is left.
const maxAttempts = 3

// MaxRetryBody is the largest request body kept in memory so the request
// can be sent again to another instance; larger bodies stream through and
// are not retried.
const MaxRetryBody = 1 << 20

// PathPrefix is the gateway's own endpoints (applications cannot be named
// with a leading underscore).
const PathPrefix = "/_forewarm/"

// Gateway is the request path. Build it with New, serve it with
// net/http, Close it to flush the counts.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	t        *table
	ref      *refresher
	arrivals *arrivals
	outcomes *outcomeBatch
	prom     *promMetrics
	http     *http.Client
	// upstreams pass the requests of applications served elsewhere on.
	upstreams map[string]*httputil.ReverseProxy

	startMu  sync.Mutex
	starting map[string]*coldStart

	closeMu sync.RWMutex
	closing bool
	bg      sync.WaitGroup
	stop    context.CancelFunc
}

// New checks cfg, reads the routing table once (a host that does not
// answer is logged, not fatal) and starts the refresh and flush loops.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if err := api.CheckID("gateway ID", cfg.ID); err != nil {
		return nil, err
	}
	if (cfg.Hosts == nil || cfg.Trust == nil) && len(cfg.Upstreams) == 0 {
		return nil, errors.New("gateway: a host source and the agents' trust are required (or upstreams only)")
	}
	if cfg.Hosts == nil {
		cfg.Hosts = Fixed{}
	}
	for app, u := range cfg.Upstreams {
		if err := api.CheckID("upstream app", app); err != nil {
			return nil, err
		}
		if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("gateway: upstream of %s: want an http:// or https:// URL", app)
		}
	}
	if cfg.Bin <= 0 {
		return nil, fmt.Errorf("gateway: bin %s must be > 0", cfg.Bin)
	}
	cfg.RefreshEvery = orDefault(cfg.RefreshEvery, 500*time.Millisecond)
	cfg.KeepTTL = orDefault(cfg.KeepTTL, 10*time.Minute)
	cfg.StartTimeout = orDefault(cfg.StartTimeout, 2*time.Minute)
	cfg.OutcomeEvery = orDefault(cfg.OutcomeEvery, time.Second)
	if cfg.KeepTTL < api.MinTTL || cfg.KeepTTL > api.MaxTTL {
		return nil, fmt.Errorf("gateway: keep TTL %s is outside %s..%s", cfg.KeepTTL, api.MinTTL, api.MaxTTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 256
	t.ResponseHeaderTimeout = 0
	g := &Gateway{
		cfg: cfg, log: cfg.Logger, t: newTable(), starting: map[string]*coldStart{},
		http: &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	g.ref = &refresher{src: cfg.Hosts, trust: cfg.Trust, t: g.t, every: cfg.RefreshEvery, appsEvery: 10 * cfg.RefreshEvery,
		timeout: max(cfg.RefreshEvery*4, 2*time.Second)}
	g.upstreams = upstreamProxies(cfg.Upstreams, t)
	g.prom = newPromMetrics(g)
	g.arrivals = newArrivals(cfg.ID, cfg.Bin, cfg.Arrivals, g.log)
	if cfg.SpoolDir != "" {
		if err := g.arrivals.useSpool(cfg.SpoolDir); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	if cfg.Outcomes != nil {
		g.outcomes = newOutcomeBatch(cfg.Outcomes, cfg.OutcomeEvery, g.log)
	}
	if err := g.ref.refresh(ctx, time.Now()); err != nil {
		g.log.Warn("routing table: first read incomplete", "err", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	g.stop = stop
	g.loop(runCtx, cfg.RefreshEvery, func(ctx context.Context) {
		if err := g.ref.refresh(ctx, time.Now()); err != nil {
			g.prom.refreshErrors.Inc()
			g.log.Debug("routing table refresh", "err", err)
		}
	})
	g.loop(runCtx, g.arrivals.tick(), g.arrivals.flush)
	return g, nil
}

// upstreamProxies builds one reverse proxy per upstream: the request's
// path (after the application's name) joined to the upstream's.
func upstreamProxies(ups map[string]*url.URL, t http.RoundTripper) map[string]*httputil.ReverseProxy {
	out := make(map[string]*httputil.ReverseProxy, len(ups))
	for app, u := range ups {
		out[app] = &httputil.ReverseProxy{
			Transport: t,
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.SetXForwarded()
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				writeError(w, http.StatusBadGateway, CodeBadGateway, app, "upstream %s: %v", u.Redacted(), err)
			},
		}
	}
	return out
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (g *Gateway) loop(ctx context.Context, every time.Duration, f func(context.Context)) {
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				f(ctx)
			}
		}
	}()
}

// Close refuses new requests, waits for the loops and writes what is
// counted (the open bin too, as its own batch) and recorded.
func (g *Gateway) Close(ctx context.Context) error {
	g.closeMu.Lock()
	g.closing = true
	g.closeMu.Unlock()
	g.stop()
	g.bg.Wait()
	var errs []error
	errs = append(errs, g.arrivals.close(ctx))
	if g.outcomes != nil {
		errs = append(errs, g.outcomes.Close())
	}
	return errors.Join(errs...)
}

// route finds the application of r and the path to send its instance.
func (g *Gateway) route(r *http.Request) (app, path string) {
	if s := g.cfg.HostSuffix; s != "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if a, ok := strings.CutSuffix(strings.ToLower(host), strings.ToLower(s)); ok && a != "" {
			return a, r.URL.EscapedPath()
		}
	}
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	app, path, _ = strings.Cut(rest, "/")
	return app, "/" + path
}

// ErrorBody is the gateway's own error answer.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	App     string `json:"app,omitempty"`
}

// Gateway error codes.
const (
	CodeUnknownApp   = "unknown_app"     // 404: no host runs the application
	CodeNoHost       = "no_host"         // 503: no host could start an instance
	CodeInstanceDown = "instance_failed" // 502: the instance failed while serving
	CodeBadGateway   = "bad_gateway"     // 502: the agent refused or could not be reached
	CodeShuttingDown = "shutting_down"   // 503
)

func writeError(w http.ResponseWriter, status int, code, app, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Code: code, App: app, Message: fmt.Sprintf(format, args...)})
}

// ServeHTTP serves one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, PathPrefix) {
		g.serveOwn(w, r)
		return
	}
	g.closeMu.RLock()
	closing := g.closing
	if !closing {
		g.bg.Add(1)
		defer g.bg.Done()
	}
	g.closeMu.RUnlock()
	if closing {
		writeError(w, http.StatusServiceUnavailable, CodeShuttingDown, "", "the gateway is shutting down")
		return
	}
	start := time.Now()
	app, path := g.route(r)
	if api.CheckID("app", app) != nil {
		writeError(w, http.StatusNotFound, CodeUnknownApp, "", "no application named in %q: send /<app>/<path>%s", r.URL.Path, g.hostHint())
		return
	}
	if p, ok := g.upstreams[app]; ok {
		g.arrivals.count(app, start)
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = "", ""
		if u, err := url.Parse(path); err == nil {
			r2.URL.Path, r2.URL.RawPath = u.Path, u.RawPath
		}
		p.ServeHTTP(w, r2)
		g.prom.requests.WithLabelValues("upstream").Observe(time.Since(start).Seconds())
		return
	}
	spec, ok := g.t.known(app)
	if !ok {
		g.prom.unknown.Inc()
		writeError(w, http.StatusNotFound, CodeUnknownApp, app, "no host runs application %q", app)
		return
	}
	g.arrivals.count(app, start)
	o := records.GatewayRequest{Time: start.UTC(), App: app, Gateway: g.cfg.ID, Method: r.Method,
		RequestID: requestID(r), BytesIn: max(0, r.ContentLength)}
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery
	}
	g.serve(w, r, spec, path, &o)
	o.TotalMS = msSince(start)
	g.prom.observe(&o)
	if g.outcomes != nil {
		g.outcomes.Add(o)
	}
}

func (g *Gateway) hostHint() string {
	if g.cfg.HostSuffix == "" {
		return ""
	}
	return " or to <app>" + g.cfg.HostSuffix
}

func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		return id
	}
	return uuid.NewString()
}

// serve sends r to a warm instance or a new one, trying again (up to
// maxAttempts) where the request cannot have run, and fills o.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, spec api.App, path string, o *records.GatewayRequest) {
	body, replay, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", o.App, "reading the request body: %v", err)
		o.Outcome, o.Status = records.GatewayFailed, http.StatusBadRequest
		return
	}
	queue := true
	for attempt := 0; ; attempt++ {
		in := g.t.pick(o.App, queue)
		o.Outcome = records.GatewayWarm
		if in == nil {
			var joined bool
			t0 := time.Now()
			in, joined, err = g.cold(r.Context(), o.App, spec, o.RequestID)
			if joined {
				o.Outcome, o.QueueMS = records.GatewayColdJoined, o.QueueMS+msSince(t0)
			} else {
				o.Outcome, o.StartMS = records.GatewayCold, msSince(t0)
			}
			if err != nil {
				o.Outcome, o.Status, o.Error = records.GatewayFailed, http.StatusServiceUnavailable, err.Error()
				writeError(w, http.StatusServiceUnavailable, CodeNoHost, o.App, "%v", err)
				return
			}
		}
		if attempt > 0 {
			o.Retried = true
		}
		retry, done := g.forward(w, r, in, path, body, o)
		if done {
			return
		}
		// A busy instance stayed busy through its agent's queue: the next
		// try starts another rather than queue again.
		queue = false
		if !retry || !replay || attempt+1 >= maxAttempts {
			o.Outcome, o.Status = records.GatewayFailed, http.StatusBadGateway
			writeError(w, http.StatusBadGateway, CodeBadGateway, o.App, "%s", o.Error)
			return
		}
	}
}

// readBody keeps a small body in memory so it can be sent twice.
func readBody(r *http.Request) (body []byte, replay bool, err error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, true, nil
	}
	if r.ContentLength > MaxRetryBody {
		return nil, false, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxRetryBody+1))
	if err != nil {
		return nil, false, err
	}
	if len(b) > MaxRetryBody {
		// Unknown length and too long to keep: send what was read, then the rest.
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
		return nil, false, nil
	}
	return b, true, nil
}

// hopHeaders are not forwarded (RFC 9110 §7.6.1), nor is the caller's
// Authorization: the agent's own credential travels in it.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Authorization"}

// forward sends the request to in through its agent. done: an answer was
// written (the instance's, or a 502 for a request that reached it); retry:
// nothing was written and the request never ran.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, in *instance, path string, body []byte, o *records.GatewayRequest) (retry, done bool) {
	in.inflight.Add(1)
	defer in.inflight.Add(-1)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	} else if r.ContentLength != 0 && r.Body != nil {
		rd = r.Body
	}
	req, err := in.host.c.InstanceRequest(r.Context(), in.lease, r.Method, path, rd)
	if err != nil {
		o.Error = err.Error()
		return false, false
	}
	auth := req.Header.Get("Authorization")
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("X-Request-Id", o.RequestID)
	req.Header.Set("X-Forwarded-Host", r.Host)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		req.Header.Set("X-Forwarded-For", ip)
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	} else {
		req.ContentLength = r.ContentLength
	}
	o.Host, o.Lease = in.host.ID, in.lease
	resp, err := g.http.Do(req)
	if err != nil {
		// The agent did not answer: the request may not have reached the
		// instance, and nothing was written.
		o.Error = fmt.Sprintf("host %s: %v", in.host.ID, err)
		in.dead.Store(true)
		return true, false
	}
	defer resp.Body.Close()
	if resp.Header.Get(api.HeaderLease) == "" {
		return g.agentRefused(w, resp, in, o)
	}
	o.Status = resp.StatusCode
	o.AppMS, _ = strconv.ParseFloat(resp.Header.Get(api.HeaderInstanceMS), 64)
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	h.Set(HeaderOutcome, o.Outcome)
	w.WriteHeader(resp.StatusCode)
	n, _ := io.Copy(w, resp.Body)
	o.BytesOut = n
	if body != nil {
		o.BytesIn = int64(len(body))
	}
	return false, true
}

// agentRefused handles an agent's own error answer for in.
func (g *Gateway) agentRefused(w http.ResponseWriter, resp *http.Response, in *instance, o *records.GatewayRequest) (retry, done bool) {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := client.ErrorOf(resp, data, "instance", in.host.URL)
	if e == nil {
		e = &client.Error{Op: "instance", Host: in.host.URL, Status: resp.StatusCode, Message: strings.TrimSpace(string(data))}
	}
	o.Error = fmt.Sprintf("host %s lease %s: %s: %s", in.host.ID, in.lease, e.Code, e.Message)
	switch e.Code {
	case api.CodeGone, api.CodeNotFound, api.CodeNotReady, api.CodeNoInstance, api.CodeWrongApp:
		in.dead.Store(true) // stale entry: the next pick skips it
		return true, false
	case api.CodeLeaseBusy:
		return true, false
	case api.CodeInstanceDown:
		in.dead.Store(true)
		if resp.Header.Get(api.HeaderSent) == "0" {
			return true, false // it never ran: once more, on another instance or cold
		}
		o.Outcome, o.Status = records.GatewayFailed, http.StatusBadGateway
		writeError(w, http.StatusBadGateway, CodeInstanceDown, o.App, "the instance of %s on host %s failed while serving the request: %s", o.App, in.host.ID, e.Message)
		return false, true
	}
	return false, false
}

// HeaderOutcome on an instance's answer says how the gateway served it:
// warm, cold (it started the instance) or cold-joined (it waited for a
// start under way).
const HeaderOutcome = "Forewarm-Outcome"

func msSince(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }
