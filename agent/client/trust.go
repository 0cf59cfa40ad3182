package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/forewarm/forewarm/agent/api"
)

// DefaultAllowURL lets the worker call agents on this machine only: the
// local stack. A fleet sets its own pattern (TrustConfig.AllowURL).
const DefaultAllowURL = `https?://(127\.0\.0\.1|localhost|\[::1\]):[0-9]{1,5}`

// MinSecretLen is the shortest root secret or shared token accepted.
const MinSecretLen = 16

// TrustConfig says which agents the worker calls and how it proves itself
// to each.
type TrustConfig struct {
	// RootSecret derives each host's token (api.DeriveToken(root, host
	// ID)): an agent holds only its own, so a compromised host cannot call
	// another. Token is one token for every host, for fleets whose agents
	// have not been given their own yet. Exactly one of the two is set.
	RootSecret []byte
	Token      string
	// CAFile is a PEM bundle of the CA (or self-signed certificates) that
	// https:// agents must present a certificate from; empty means the
	// system's roots.
	CAFile string
	// Insecure allows plain http:// to an agent that is not on loopback
	// (the token then crosses the network in clear).
	Insecure bool
	// AllowURL is the pattern every agent URL must match: a regular
	// expression matched against the whole URL (without a trailing "/"),
	// in which {host} stands for the host's ID, e.g.
	// `https://{host}\.agents\.example\.com:7071` binds each host ID to
	// its own name. Empty means DefaultAllowURL.
	AllowURL string
	// TLSName, when set, is the name an https agent's certificate must
	// carry instead of its URL's host name, with {host} for the host's ID
	// (e.g. "{host}" or "{host}.agents.example.com"): agents reached at
	// any allowed address (a pod IP) still prove which host they are.
	TLSName string
}

// Trust builds clients only for agent URLs its configuration allows,
// each with its host's credentials. It is safe for concurrent use.
type Trust struct {
	cfg   TrustConfig
	tls   *tls.Config
	allow string
}

// NewTrust checks cfg: one credential of at least MinSecretLen, a readable
// CA file, and an allow pattern that compiles.
func NewTrust(cfg TrustConfig) (*Trust, error) {
	switch {
	case len(cfg.RootSecret) > 0 && cfg.Token != "":
		return nil, errors.New("agent credentials: give a root secret or one shared token, not both")
	case len(cfg.RootSecret) == 0 && cfg.Token == "":
		return nil, errors.New("agent credentials: no root secret and no token")
	case len(cfg.RootSecret) > 0 && len(cfg.RootSecret) < MinSecretLen:
		return nil, fmt.Errorf("agent root secret: %d bytes, at least %d needed", len(cfg.RootSecret), MinSecretLen)
	case cfg.Token != "" && len(cfg.Token) < MinSecretLen:
		return nil, fmt.Errorf("agent token: %d characters, at least %d needed", len(cfg.Token), MinSecretLen)
	}
	t := &Trust{cfg: cfg, allow: cfg.AllowURL}
	if t.allow == "" {
		t.allow = DefaultAllowURL
	}
	if _, err := t.pattern("host"); err != nil {
		return nil, fmt.Errorf("agent URL allow pattern %q: %w", t.allow, err)
	}
	if n := strings.ReplaceAll(cfg.TLSName, "{host}", "h"); cfg.TLSName != "" && !tlsNameRE.MatchString(n) {
		return nil, fmt.Errorf("agent TLS name %q: want a DNS name, {host} standing for the host ID (e.g. {host}.agents.example.com)", cfg.TLSName)
	}
	if cfg.CAFile != "" {
		tc, err := TLSConfigFromCA(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("agent CA: %w", err)
		}
		t.tls = tc
	}
	return t, nil
}

var tlsNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// PerHost says whether each host gets its own token.
func (t *Trust) PerHost() bool { return len(t.cfg.RootSecret) > 0 }

// Binds says whether the configuration can bind an agent URL off
// loopback to its host ID: {host} in the allow pattern or in the TLS
// name. With per-host tokens and neither, only agents on loopback are
// called (see Client).
func (t *Trust) Binds() bool {
	return strings.Contains(t.allow, "{host}") || strings.Contains(t.cfg.TLSName, "{host}")
}

// AllowURL is the pattern in force.
func (t *Trust) AllowURL() string { return t.allow }

func (t *Trust) pattern(hostID string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + strings.ReplaceAll(t.allow, "{host}", regexp.QuoteMeta(hostID)) + `)$`)
}

// Refusal codes of a TrustError.
const (
	CodeBadURL        = "bad_url"         // not an http(s) URL of a host, or a bad host ID
	CodeURLNotAllowed = "url_not_allowed" // does not match the allow pattern
	CodeInsecureURL   = "insecure_url"    // plain HTTP to an agent off loopback
	CodeURLNotBound   = "url_not_bound"   // per-host tokens: nothing ties the URL to the host ID
)

// TrustError is a URL the worker refuses to call.
type TrustError struct {
	HostID string
	URL    string
	Code   string
	Reason string
}

func (e *TrustError) Error() string {
	return fmt.Sprintf("host agent %s at %q: %s: %s", e.HostID, e.URL, e.Code, e.Reason)
}

// Client returns a client of host hostID's agent at rawURL presenting that
// host's token, or a *TrustError when the URL is not one to call.
func (t *Trust) Client(hostID, rawURL string) (*Client, error) {
	refuse := func(code, format string, args ...any) (*Client, error) {
		return nil, &TrustError{HostID: hostID, URL: rawURL, Code: code, Reason: fmt.Sprintf(format, args...)}
	}
	if err := api.CheckID("host ID", hostID); err != nil {
		return refuse(CodeBadURL, "%v", err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return refuse(CodeBadURL, "%v", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return refuse(CodeBadURL, "an agent URL is http(s)://host:port and nothing more")
	}
	base := strings.TrimRight(rawURL, "/")
	re, err := t.pattern(hostID)
	if err != nil {
		return refuse(CodeURLNotAllowed, "allow pattern: %v", err)
	}
	if !re.MatchString(base) {
		return refuse(CodeURLNotAllowed, "does not match the allowed agent URLs %s (worker --agent-url-allow)", t.allow)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) && !t.cfg.Insecure {
		return refuse(CodeInsecureURL, "plain HTTP to an agent that is not on loopback would send its token in clear; use https (and --agent-ca), or --agent-insecure")
	}
	if t.PerHost() && !t.bound(hostID, base, u) {
		// The registry is written by every agent with one insert user: a
		// compromised node can register another host's ID with its own
		// URL. Only a URL that names the host, or a certificate that must,
		// gets that host's token.
		return refuse(CodeURLNotBound, "nothing ties this URL to host %s, so any node could register it under that ID and be sent %s's token: put {host} in the allow pattern (worker --agent-url-allow, e.g. https://{host}\\.agents\\.example\\.com:7071), or serve the agents over https with certificates naming their host IDs (worker --agent-tls-name {host})", hostID, hostID)
	}
	tok := t.cfg.Token
	if t.PerHost() {
		tok = api.DeriveToken(t.cfg.RootSecret, hostID)
	}
	var opts []Option
	if u.Scheme == "https" && (t.tls != nil || t.cfg.TLSName != "") {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.tls != nil {
			tc = t.tls.Clone()
		}
		if t.cfg.TLSName != "" {
			tc.ServerName = t.tlsName(hostID)
		}
		opts = append(opts, WithTLSConfig(tc))
	}
	return New(base, tok, opts...), nil
}

// tlsName is the name host hostID's certificate must carry.
func (t *Trust) tlsName(hostID string) string {
	return strings.ReplaceAll(t.cfg.TLSName, "{host}", hostID)
}

// bound says whether only host hostID's agent can be reached at the URL
// (base, parsed u): on loopback (this machine, which holds the root
// secret), or admitted by the allow pattern for this host ID and not for
// another (the pattern's {host} decides), or over https with a
// certificate that must name this host (a TLS name with {host}).
func (t *Trust) bound(hostID, base string, u *url.URL) bool {
	if isLoopback(u.Hostname()) {
		return true
	}
	other := "forewarm-other-host"
	if other == hostID {
		other += "-2"
	}
	if re, err := t.pattern(other); err == nil && !re.MatchString(base) {
		return true
	}
	return u.Scheme == "https" && t.cfg.TLSName != "" && t.tlsName(hostID) != t.tlsName(other)
}

// isLoopback says whether host (a name or an IP literal) is this machine.
// Names are not resolved: only "localhost" counts.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
