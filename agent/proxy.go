package agent

// Serving real HTTP: a request for /v1/instances/{id}/http/{path} goes to
// the process instance of lease id on loopback, within the lease's limit of
// requests at once, and its answer comes back as the instance gave it.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/instance"
)

// MaxInstanceBody caps the body of a request for an instance.
const MaxInstanceBody = 32 << 20

// proxyCall is one request on its way to an instance.
type proxyCall struct {
	l     *lease
	inst  *instance.Instance
	start time.Time
	sent  atomic.Bool // request headers written to the instance's connection
}

type proxyCallKey struct{}

// instanceProxy forwards to the instance a request's context names. One
// serves every instance: the target and its transport come with the call.
func (a *Agent) instanceProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The URL was set by handleInstance; the token is the agent's,
			// never the application's.
			pr.Out.Header.Del("Authorization")
			pr.Out.Host = ""
		},
		Transport: callTransport{},
		ModifyResponse: func(resp *http.Response) error {
			c := resp.Request.Context().Value(proxyCallKey{}).(*proxyCall)
			h := resp.Header
			h[api.HeaderHost] = []string{a.cfg.HostID}
			h[api.HeaderLease] = []string{c.l.id}
			h[api.HeaderInstanceMS] = []string{strconv.FormatFloat(msOf(time.Since(c.start)), 'f', 3, 64)}
			return nil
		},
		// FlushInterval 0: an answer of unknown length (a stream, server-sent
		// events) is flushed as it comes; one of known length in one go.
		ErrorHandler: a.proxyError,
	}
}

// callTransport sends through the transport of the call's instance (its
// own pool of kept-alive connections).
type callTransport struct{}

func (callTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c := r.Context().Value(proxyCallKey{}).(*proxyCall)
	return c.inst.Transport().RoundTrip(r)
}

func (a *Agent) handleInstance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := badID("lease ID", id); err != nil {
		a.instanceRefusal(w, err, false)
		return
	}
	prefix := api.PathInstances + "/" + id + "/http"
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), prefix)
	if !ok {
		a.instanceRefusal(w, errorf(api.CodeBadRequest, "path %q does not name lease %s's instance", r.URL.EscapedPath(), id), false)
		return
	}
	if rest == "" {
		rest = "/"
	}
	path, err := url.PathUnescape(rest)
	if err != nil {
		a.instanceRefusal(w, errorf(api.CodeBadRequest, "path %q: %v", rest, err), false)
		return
	}
	if r.ContentLength > MaxInstanceBody {
		a.instanceRefusal(w, errorf(api.CodeTooLarge, "request body of %d bytes is over %d", r.ContentLength, MaxInstanceBody), false)
		return
	}
	if err := a.begin(); err != nil {
		a.instanceRefusal(w, err, false)
		return
	}
	defer a.ops.Done()
	start := time.Now()
	l, inst, err := a.takeInstance(r.Context(), id)
	if err != nil {
		a.instanceRefusal(w, err, false)
		return
	}
	defer a.endRequest(l)
	if note, _ := inst.Exit(); note != "" {
		a.instanceRefusal(w, errorf(api.CodeInstanceDown, "the instance of lease %s (application %s) has ended: %s", id, l.app, note), false)
		return
	}

	c := &proxyCall{l: l, inst: inst, start: time.Now()}
	ctx := context.WithValue(r.Context(), proxyCallKey{}, c)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { c.sent.Store(true) }})
	out := r.WithContext(ctx)
	out.URL = &url.URL{Scheme: "http", Host: inst.Addr(), Path: path, RawPath: rest, RawQuery: r.URL.RawQuery}
	if r.Body != nil && r.Body != http.NoBody {
		out.Body = http.MaxBytesReader(w, r.Body, MaxInstanceBody)
	}
	a.proxy.ServeHTTP(w, out)
	if w.Header().Get(api.HeaderLease) != "" {
		a.prom.instRequests.WithLabelValues("answered").Inc()
	}
	a.prom.serve.WithLabelValues("instance").Observe(time.Since(start).Seconds())
}

// takeInstance puts a request on the ready process instance of lease id,
// waiting up to Config.QueueWait for one of its slots (spec concurrency)
// when all are taken. The lease's use lock is read-held on success;
// endRequest gives the slot back.
func (a *Agent) takeInstance(ctx context.Context, id string) (*lease, *instance.Instance, error) {
	var timer *time.Timer
	for {
		a.mu.Lock()
		l, ok := a.leases[id]
		switch {
		case !ok:
			err := a.missing(id)
			a.mu.Unlock()
			return nil, nil, err
		case l.state == api.StatePreparing:
			a.mu.Unlock()
			return nil, nil, errorf(api.CodeNotReady, "lease %s is still being prepared", id)
		case l.inst == nil:
			a.mu.Unlock()
			return nil, nil, errorf(api.CodeNoInstance, "lease %s of application %s is a memory reservation (no spec of %s on host %s): serve it with %s",
				id, l.app, l.app, a.cfg.HostID, api.PathServe)
		}
		now := time.Now()
		if now.After(l.expires) {
			err := errorf(api.CodeGone, "lease %s expired at %s", id, l.expires.UTC().Format(time.RFC3339Nano))
			if l.inflight == 0 {
				a.retireLocked(l, api.StateExpired, "", now)
				a.mu.Unlock()
				a.freeLater(l)
				a.counters.expired.Add(1)
				return nil, nil, err
			}
			a.mu.Unlock()
			return nil, nil, err
		}
		if l.inflight < l.maxConc {
			l.startRequest(now)
			inst := l.inst
			a.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return l, inst, nil
		}
		if timer == nil {
			if a.cfg.QueueWait <= 0 {
				a.mu.Unlock()
				return nil, nil, busyInstance(l)
			}
			timer = time.NewTimer(a.cfg.QueueWait)
		}
		if a.freed == nil {
			a.freed = make(chan struct{})
		}
		freed := a.freed
		a.mu.Unlock()
		a.queueTries.Add(1)
		select {
		case <-freed:
		case <-timer.C:
			a.mu.Lock()
			err := busyInstance(l)
			a.mu.Unlock()
			return nil, nil, err
		case <-ctx.Done():
			timer.Stop()
			return nil, nil, fmt.Errorf("waiting for a slot of lease %s: %w", id, ctx.Err())
		}
	}
}

// busyInstance refuses a request beyond an instance's concurrency; a.mu
// must be held.
func busyInstance(l *lease) error {
	return errorf(api.CodeLeaseBusy, "lease %s already serves %d requests, its instance's limit (spec concurrency of %s)",
		l.id, l.inflight, l.app)
}

// proxyError answers a request the instance did not answer: 502
// instance_failed, saying whether anything of the request reached it and,
// when the process ended meanwhile, how.
func (a *Agent) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	c := r.Context().Value(proxyCallKey{}).(*proxyCall)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		a.instanceRefusal(w, errorf(api.CodeTooLarge, "request body over %d bytes", MaxInstanceBody), true)
		return
	}
	if r.Context().Err() != nil {
		// The caller went away; nobody reads this answer.
		a.instanceRefusal(w, errorf(api.CodeInstanceDown, "request for lease %s cancelled by the caller: %v", c.l.id, context.Cause(r.Context())), c.sent.Load())
		return
	}
	// A process that died under the request is usually reaped within a
	// few milliseconds of the reset: wait briefly so the answer says why.
	ended := ""
	select {
	case <-c.inst.Done():
		note, _ := c.inst.Exit()
		ended = "; the process ended: " + note
	case <-time.After(100 * time.Millisecond):
	}
	if out := c.inst.Output(); ended != "" && out != "" {
		ended += "; last output: " + out
	}
	sent := c.sent.Load()
	reached := "the request did not reach it"
	if sent {
		reached = "the request may have reached it"
	}
	a.instanceRefusal(w, errorf(api.CodeInstanceDown, "instance of lease %s (application %s) at %s did not answer: %v (%s)%s",
		c.l.id, c.l.app, c.inst.Addr(), unwrapURLError(err), reached, ended), sent)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// instanceRefusal is the agent's own answer to an instance request: an
// api.ErrorBody with HeaderSent and never HeaderLease, so a caller tells
// it from the instance's answers.
func (a *Agent) instanceRefusal(w http.ResponseWriter, err error, sent bool) {
	outcome := "refused"
	switch CodeOf(err) {
	case api.CodeInstanceDown:
		outcome = "instance_failed"
	case api.CodeLeaseBusy:
		outcome = "lease_busy"
	}
	a.prom.instRequests.WithLabelValues(outcome).Inc()
	h := w.Header()
	h.Del(api.HeaderLease)
	if sent {
		h.Set(api.HeaderSent, "1")
	} else {
		h.Set(api.HeaderSent, "0")
	}
	writeError(w, err)
}
