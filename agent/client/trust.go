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
	if cfg.CAFile != "" {
		tc, err := TLSConfigFromCA(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("agent CA: %w", err)
		}
		t.tls = tc
	}
	return t, nil
}

// PerHost says whether each host gets its own token.
func (t *Trust) PerHost() bool { return len(t.cfg.RootSecret) > 0 }

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
	tok := t.cfg.Token
	if t.PerHost() {
		tok = api.DeriveToken(t.cfg.RootSecret, hostID)
	}
	var opts []Option
	if u.Scheme == "https" && t.tls != nil {
		opts = append(opts, WithTLSConfig(t.tls.Clone()))
	}
	return New(base, tok, opts...), nil
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
