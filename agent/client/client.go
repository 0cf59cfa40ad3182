// Package client is the Go client of the Forewarm host agent: what the
// preparation and serving activities use to reserve leases, run shadow
// requests, extend leases in place, serve requests, release leases and
// read host metrics. The wire format and its semantics are package api's.
//
// Errors are classified where they happen. A refusal by the agent is an
// *Error carrying the HTTP status and the agent's code (api.Code*);
// IsPermanent tells a caller not to retry the same call on the same host:
// bad request, unauthorized, over capacity, not found, gone, wrong
// application, lease busy, lease too small, not ready, unknown spec, and an
// instance that did not start (start_failed). Network failures,
// 5xx answers and a shutting-down agent are transient. A URL the worker's
// Trust refuses to call is a *TrustError, permanent too.
//
// Every call needs a context; give it a deadline (the client's own safety
// timeout is 10 minutes). The client never follows redirects: an agent
// that answers with one is not given the token anywhere else.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/forewarm/forewarm/agent/api"
)

// Wire types shared with the agent.
type (
	Lease         = api.Lease
	ShadowResult  = api.ShadowResult
	ServeRequest  = api.ServeRequest
	ServeResult   = api.ServeResult
	ReleaseResult = api.ReleaseResult
	HostMetrics   = api.HostMetrics
	Info          = api.Info
	LeaseUse      = api.LeaseUse
)

// ReserveRequest asks for a lease; TTL 0 means the agent's default.
type ReserveRequest struct {
	PreparationID string
	App           string
	MemoryMB      float64
	DiskMB        float64
	CPUMilli      int64
	TTL           time.Duration
	// SpecVersion, when set, is the version of App's spec the caller
	// expects the host to run (unknown_spec otherwise).
	SpecVersion string
}

// ShadowRequest runs a shadow request on lease PreparationID; SampleMB 0
// means the agent's default sample.
type ShadowRequest struct {
	PreparationID string
	ReadRatio     float64
	SampleMB      float64
}

// Client talks to one host agent. It is safe for concurrent use; build one
// per host and keep it.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// Option adjusts a Client.
type Option func(*Client)

// WithHTTPClient replaces the HTTP client (e.g. for custom TLS).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithTLSConfig uses tc for https:// agents.
func WithTLSConfig(tc *tls.Config) Option {
	return func(c *Client) {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = tc
		c.http = &http.Client{Transport: t, Timeout: c.http.Timeout, CheckRedirect: noRedirects}
	}
}

// noRedirects answers a redirect with itself (the caller sees a 3xx
// refusal): the token goes only to the URL the caller was allowed to call.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// TLSConfigFromCA trusts the PEM certificates in caFile (an agent's
// self-signed certificate, or the CA that signed it).
func TLSConfigFromCA(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// New returns a client of the agent at baseURL (e.g. http://127.0.0.1:7071)
// presenting token.
func New(baseURL, token string, opts ...Option) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	c := &Client{
		base:  strings.TrimRight(baseURL, "/"),
		token: token,
		http:  &http.Client{Transport: t, Timeout: 10 * time.Minute, CheckRedirect: noRedirects},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL is the agent's address.
func (c *Client) BaseURL() string { return c.base }

// Reserve asks for a lease; a repeat with the same preparation ID and
// sizes returns the same lease (Existing set).
func (c *Client) Reserve(ctx context.Context, r ReserveRequest) (Lease, error) {
	var l Lease
	body := api.ReserveRequest{
		PreparationID: r.PreparationID, App: r.App,
		MemoryMB: r.MemoryMB, DiskMB: r.DiskMB, CPUMilli: r.CPUMilli,
		TTLSeconds: r.TTL.Seconds(), SpecVersion: r.SpecVersion,
	}
	err := c.do(ctx, "reserve", http.MethodPost, api.PathLeases, body, &l)
	return l, err
}

// Shadow runs a shadow request on a ready lease.
func (c *Client) Shadow(ctx context.Context, r ShadowRequest) (ShadowResult, error) {
	var res ShadowResult
	if err := api.CheckID("preparation ID", r.PreparationID); err != nil {
		return res, &Error{Op: "shadow", Host: c.base, Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: err.Error()}
	}
	body := api.ShadowRequest{ReadRatio: r.ReadRatio, SampleMB: r.SampleMB}
	err := c.do(ctx, "shadow", http.MethodPost, api.ShadowPath(r.PreparationID), body, &res)
	return res, err
}

// Extend sets a ready lease's expiry to now + ttl, in place (no new
// reservation, no shadow). app, when not empty, must be the lease's
// application. Refusals: not_ready (still preparing), gone (ended),
// not_found, wrong_app, bad_request (ttl outside api.MinTTL..api.MaxTTL).
func (c *Client) Extend(ctx context.Context, preparationID string, ttl time.Duration, app string) (Lease, error) {
	var l Lease
	if err := api.CheckID("preparation ID", preparationID); err != nil {
		return l, &Error{Op: "extend", Host: c.base, Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: err.Error()}
	}
	err := c.do(ctx, "extend", http.MethodPost, api.ExtendPath(preparationID), api.ExtendRequest{TTLSeconds: ttl.Seconds(), App: app}, &l)
	return l, err
}

// Serve runs a request: warm when PreparationID names a ready lease of the
// same application that has room for it, cold otherwise (with
// FallbackCold) and, with KeepID and KeepTTLSeconds, keeping a cold
// instance as a new lease. A retry with the same request ID returns the
// first result (Replayed set) instead of serving twice.
func (c *Client) Serve(ctx context.Context, r ServeRequest) (ServeResult, error) {
	var res ServeResult
	err := c.do(ctx, "serve", http.MethodPost, api.PathServe, r, &res)
	return res, err
}

// Release frees a lease. Releasing one that already ended is not an error.
func (c *Client) Release(ctx context.Context, preparationID string) error {
	_, err := c.ReleaseLease(ctx, preparationID)
	return err
}

// ReleaseLease frees a lease and says whether this call released it.
func (c *Client) ReleaseLease(ctx context.Context, preparationID string) (ReleaseResult, error) {
	var res ReleaseResult
	if err := api.CheckID("preparation ID", preparationID); err != nil {
		return res, &Error{Op: "release", Host: c.base, Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: err.Error()}
	}
	err := c.do(ctx, "release", http.MethodDelete, api.LeasePath(preparationID), nil, &res)
	return res, err
}

// Lease describes one live lease.
func (c *Client) Lease(ctx context.Context, preparationID string) (Lease, error) {
	var l Lease
	if err := api.CheckID("preparation ID", preparationID); err != nil {
		return l, &Error{Op: "lease", Host: c.base, Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: err.Error()}
	}
	err := c.do(ctx, "lease", http.MethodGet, api.LeasePath(preparationID), nil, &l)
	return l, err
}

// Leases lists the live leases.
func (c *Client) Leases(ctx context.Context) ([]Lease, error) {
	var ls []Lease
	err := c.do(ctx, "leases", http.MethodGet, api.PathLeases, nil, &ls)
	return ls, err
}

// Apps lists the application specs the agent runs as process instances.
func (c *Client) Apps(ctx context.Context) ([]api.App, error) {
	var as []api.App
	err := c.do(ctx, "apps", http.MethodGet, api.PathApps, nil, &as)
	return as, err
}

// InstanceRequest builds a request for path (with its query) on the
// process instance of lease id, to be sent with HTTP: the agent forwards
// it to the instance and answers with the instance's own answer (or an
// api.ErrorBody with a code when the instance cannot answer).
func (c *Client) InstanceRequest(ctx context.Context, id, method, pathAndQuery string, body io.Reader) (*http.Request, error) {
	if err := api.CheckID("lease", id); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(pathAndQuery, "/") {
		pathAndQuery = "/" + pathAndQuery
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+api.InstancePath(id, pathAndQuery), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	return req, nil
}

// HTTP is the client's HTTP client (its transport and TLS), for sending
// what InstanceRequest builds.
func (c *Client) HTTP() *http.Client { return c.http }

// ErrorOf reads an agent's refusal from a non-2xx answer that carries an
// api.ErrorBody, or returns nil when the answer is the instance's own.
func ErrorOf(resp *http.Response, body []byte, op, host string) *Error {
	var eb api.ErrorBody
	if resp.Header.Get(api.HeaderLease) != "" || json.Unmarshal(body, &eb) != nil || eb.Code == "" {
		return nil
	}
	return &Error{Op: op, Host: host, Status: resp.StatusCode, Code: eb.Code, Message: eb.Message}
}

// Metrics returns the host's current metrics.
func (c *Client) Metrics(ctx context.Context) (HostMetrics, error) {
	var m HostMetrics
	err := c.do(ctx, "metrics", http.MethodGet, api.PathMetrics, nil, &m)
	return m, err
}

// Info describes the agent (capacity, speed, version).
func (c *Client) Info(ctx context.Context) (Info, error) {
	var i Info
	err := c.do(ctx, "info", http.MethodGet, api.PathInfo, nil, &i)
	return i, err
}

// Health checks the agent process answers (no token needed).
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, "health", http.MethodGet, api.PathHealth, nil, nil)
}

// Ready checks the agent accepts work (not shutting down).
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, "ready", http.MethodGet, api.PathReady, nil, nil)
}

func (c *Client) do(ctx context.Context, op, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("host agent %s %s: encode request: %w", c.base, op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("host agent %s %s: %w", c.base, op, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("host agent %s %s: %w", c.base, op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("host agent %s %s: read answer: %w", c.base, op, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Op: op, Host: c.base, Status: resp.StatusCode}
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Code != "" {
			e.Code, e.Message = eb.Code, eb.Message
		} else {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("host agent %s %s: decode answer: %w", c.base, op, err)
	}
	return nil
}

// Error is a refusal by the agent.
type Error struct {
	Op      string // reserve, shadow, serve, …
	Host    string // agent base URL
	Status  int    // HTTP status
	Code    string // api.Code*
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("host agent %s %s: %s (%d): %s", e.Host, e.Op, e.Code, e.Status, e.Message)
}

// Permanent says retrying the same call on the same host will not help:
// the agent's 4xx answers, and an instance that did not start (the same
// start there fails the same way; another host may start it).
func (e *Error) Permanent() bool {
	if e.Code == api.CodeStartFailed {
		return true
	}
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// Is lets errors.Is match the sentinels below by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Op == "" && t.Code != "" && t.Code == e.Code
}

// Sentinels for errors.Is(err, client.ErrOverCapacity) and friends.
var (
	ErrBadRequest    = &Error{Code: api.CodeBadRequest}
	ErrUnauthorized  = &Error{Code: api.CodeUnauthorized}
	ErrNotFound      = &Error{Code: api.CodeNotFound}
	ErrWrongApp      = &Error{Code: api.CodeWrongApp}
	ErrConflict      = &Error{Code: api.CodeConflict}
	ErrClaimed       = &Error{Code: api.CodeClaimed}
	ErrLeaseTooSmall = &Error{Code: api.CodeLeaseTooSmall}
	ErrLeaseBusy     = &Error{Code: api.CodeLeaseBusy}
	ErrNotReady      = &Error{Code: api.CodeNotReady}
	ErrGone          = &Error{Code: api.CodeGone}
	ErrOverCapacity  = &Error{Code: api.CodeOverCapacity}
	ErrShuttingDown  = &Error{Code: api.CodeShuttingDown}
	ErrUnknownSpec   = &Error{Code: api.CodeUnknownSpec}
	ErrInstanceDown  = &Error{Code: api.CodeInstanceDown}
	ErrStartFailed   = &Error{Code: api.CodeStartFailed}
)

// IsPermanent reports whether err is a refusal that retrying on the same
// host cannot fix: the agent's 4xx answers and the Trust's refusals.
// Network errors and 5xx answers are not permanent.
func IsPermanent(err error) bool {
	var e *Error
	var te *TrustError
	return errors.As(err, &e) && e.Permanent() || errors.As(err, &te)
}

// Code returns the agent's error code or the Trust's refusal code, or ""
// when err is neither.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var te *TrustError
	if errors.As(err, &te) {
		return te.Code
	}
	return ""
}
