package agent_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

var rootSecret = []byte("fleet-root-secret-0123456789abcdef")

// startHost runs a real agent for host id holding only its own derived
// token, listening on addr.
func startHost(t *testing.T, id, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{HostID: id, DataDir: t.TempDir(), MemoryMB: 256, DiskMB: 256, CPUMilli: 2000, DefaultTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h, err := a.Handler(api.DeriveToken(rootSecret, id))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = a.Close(context.Background())
	})
	return "http://" + ln.Addr().String()
}

func newTrust(t *testing.T, cfg client.TrustConfig) *client.Trust {
	t.Helper()
	tr, err := client.NewTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// Each host holds only its own token: the worker, deriving per host from
// the root secret, is let in; a compromised host's token is refused by
// every other host.
func TestPerHostTokensDoNotOpenOtherHosts(t *testing.T) {
	ctx := ctxT(t)
	urlA := startHost(t, "host-a", "127.0.0.1:0")
	urlB := startHost(t, "host-b", "127.0.0.1:0")
	trust := newTrust(t, client.TrustConfig{RootSecret: rootSecret})
	for id, url := range map[string]string{"host-a": urlA, "host-b": urlB} {
		c, err := trust.Client(id, url)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := c.Info(ctx); err != nil || info.HostID != id {
			t.Errorf("worker calling %s: %+v, %v", id, info, err)
		}
	}
	stolen := client.New(urlB, api.DeriveToken(rootSecret, "host-a"))
	if _, err := stolen.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app", MemoryMB: 1}); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("host-a's token on host-b: %v, want unauthorized", err)
	}
	// The worker deriving for the wrong host (a registry row naming host-a
	// at host-b's URL) is refused too: the token is bound to the host ID.
	c, err := trust.Client("host-a", urlB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("host-a's derived token sent to host-b: %v, want unauthorized", err)
	}
	// The derivation is HMAC-SHA256(root, host ID) in lowercase hex.
	if got := api.DeriveToken([]byte("key"), "The quick brown fox jumps over the lazy dog"); got != "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" {
		t.Errorf("DeriveToken = %s, not the well-known HMAC-SHA256 example", got)
	}
}

// The worker-side client calls only URLs its allow pattern admits, and
// plain HTTP only on loopback unless told otherwise; each refusal says
// which rule, before any connection is made.
func TestTrustRefusesURLsItMustNotCall(t *testing.T) {
	ctx := ctxT(t)
	local := startHost(t, "host-a", "127.0.0.1:0")
	trust := newTrust(t, client.TrustConfig{RootSecret: rootSecret})
	if trust.AllowURL() != client.DefaultAllowURL {
		t.Errorf("default allow pattern %q", trust.AllowURL())
	}
	if _, err := trust.Client("host-a", local+"/"); err != nil {
		t.Errorf("the local agent with a trailing slash: %v", err)
	}
	cases := []struct {
		name, host, url, code string
	}{
		{"off the allow list", "host-a", "http://169.254.169.254:80", client.CodeURLNotAllowed},
		{"other scheme", "host-a", "ftp://127.0.0.1:21", client.CodeBadURL},
		{"credentials in URL", "host-a", "http://user:pw@127.0.0.1:7071", client.CodeBadURL},
		{"a path", "host-a", "http://127.0.0.1:7071/admin", client.CodeBadURL},
		{"a query", "host-a", "http://127.0.0.1:7071?x=1", client.CodeBadURL},
		{"lookalike host", "host-a", "http://127.0.0.1.evil.example:7071", client.CodeURLNotAllowed},
		{"unsafe host ID", "../host", local, client.CodeBadURL},
	}
	for _, tc := range cases {
		c, err := trust.Client(tc.host, tc.url)
		var te *client.TrustError
		if c != nil || !errors.As(err, &te) || te.Code != tc.code || client.Code(err) != tc.code || !client.IsPermanent(err) {
			t.Errorf("%s (%s): %v, want a permanent %s refusal", tc.name, tc.url, err, tc.code)
		}
	}

	// A fleet pattern binds each host ID to its own name.
	fleet := newTrust(t, client.TrustConfig{RootSecret: rootSecret, AllowURL: `https://{host}\.agents\.example\.com:7071`})
	if _, err := fleet.Client("host-a", "https://host-a.agents.example.com:7071"); err != nil {
		t.Errorf("host-a at its own name: %v", err)
	}
	if _, err := fleet.Client("host-a", "https://host-b.agents.example.com:7071"); client.Code(err) != client.CodeURLNotAllowed {
		t.Errorf("host-a at host-b's name: %v, want url_not_allowed", err)
	}
	if _, err := fleet.Client("host.a", "https://hostxa.agents.example.com:7071"); client.Code(err) != client.CodeURLNotAllowed {
		t.Errorf("a host ID's dot matched any character: %v", err)
	}

	// Plain HTTP off loopback: refused, unless insecure is allowed.
	ip := nonLoopbackIPv4()
	off := "http://" + net.JoinHostPort(ip, "7071")
	anyHost := `https?://[^/]+`
	// (https binds the URL to the host through the certificate's name.)
	strict := newTrust(t, client.TrustConfig{RootSecret: rootSecret, AllowURL: anyHost, TLSName: "{host}"})
	if _, err := strict.Client("host-a", off); client.Code(err) != client.CodeInsecureURL || !strings.Contains(err.Error(), "--agent-insecure") {
		t.Errorf("plain HTTP to %s: %v, want insecure_url", off, err)
	}
	if _, err := strict.Client("host-a", strings.Replace(off, "http://", "https://", 1)); err != nil {
		t.Errorf("https to %s: %v", off, err)
	}
	if _, err := strict.Client("host-a", "http://localhost:7071"); err != nil {
		t.Errorf("plain HTTP to localhost: %v", err)
	}
	// Plain HTTP is bound to a host only by the URL naming it: here the
	// host's ID is its address.
	insecure := newTrust(t, client.TrustConfig{RootSecret: rootSecret, AllowURL: `http://{host}:[0-9]+`, Insecure: true})
	if ip == "192.0.2.1" {
		// No address of this machine is off loopback: the client is built
		// and its call fails on the network, not on a trust rule.
		c, err := insecure.Client(ip, off)
		if err != nil {
			t.Fatalf("insecure trust refused %s: %v", off, err)
		}
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if _, err := c.Info(cctx); err == nil || client.Code(err) != "" {
			t.Errorf("call to an unreachable address: %v, want a network error", err)
		}
		return
	}
	// A real agent on this machine's non-loopback address.
	real := startHost(t, ip, net.JoinHostPort(ip, "0"))
	if _, err := strict.Client(ip, real); client.Code(err) != client.CodeInsecureURL {
		t.Errorf("plain HTTP to the agent at %s: %v, want insecure_url", real, err)
	}
	c, err := insecure.Client(ip, real)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(ctx); err != nil || info.HostID != ip {
		t.Errorf("insecure call to %s: %+v, %v", real, info, err)
	}
}

// nonLoopbackIPv4 is an address of this machine off loopback, or a
// documentation address (never routed) when it has none.
func nonLoopbackIPv4() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return "192.0.2.1"
}

func TestTrustConfigIsChecked(t *testing.T) {
	cases := []struct {
		name string
		cfg  client.TrustConfig
		says string
	}{
		{"nothing", client.TrustConfig{}, "no root secret and no token"},
		{"both", client.TrustConfig{RootSecret: rootSecret, Token: "shared-token-0123456789"}, "not both"},
		{"short secret", client.TrustConfig{RootSecret: []byte("short")}, "at least 16"},
		{"short token", client.TrustConfig{Token: "short"}, "at least 16"},
		{"bad pattern", client.TrustConfig{RootSecret: rootSecret, AllowURL: "http://(127"}, "agent URL allow pattern"},
		{"missing CA", client.TrustConfig{RootSecret: rootSecret, CAFile: "/nonexistent/ca.pem"}, "agent CA"},
		{"TLS name with a scheme", client.TrustConfig{RootSecret: rootSecret, TLSName: "https://{host}"}, "agent TLS name"},
	}
	for _, tc := range cases {
		if _, err := client.NewTrust(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
}
