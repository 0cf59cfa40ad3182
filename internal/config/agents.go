package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	agentclient "github.com/forewarm/forewarm/agent/client"
)

// Agents is how a process that calls host agents (the worker, the
// gateway) proves itself to them and which of them it trusts: the root
// secret each host's token is derived from (or, for older fleets, one
// shared token), the CA of https agents, and the URLs it may call.
type Agents struct {
	RootSecretFile string
	RootSecret     string
	TokenFile      string
	Token          string
	CA             string
	Insecure       bool
	URLAllow       string
	TLSName        string
}

// Flags registers the --agent-* flags, with their environment defaults.
func (a *Agents) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&a.RootSecretFile, "agent-root-secret-file", os.Getenv("FOREWARM_AGENT_ROOT_SECRET_FILE"), "file holding the root secret each host agent's token is derived from, hex(HMAC-SHA256(secret, host ID)) (see hostagent --print-token), or set $FOREWARM_AGENT_ROOT_SECRET ($FOREWARM_AGENT_ROOT_SECRET_FILE)")
	fs.StringVar(&a.TokenFile, "agent-token-file", os.Getenv("HOSTAGENT_TOKEN_FILE"), "older fleets: one bearer token shared by every host agent, or set $HOSTAGENT_TOKEN; prefer --agent-root-secret-file ($HOSTAGENT_TOKEN_FILE)")
	fs.StringVar(&a.CA, "agent-ca", os.Getenv("FOREWARM_AGENT_CA"), "PEM file of the CA that https:// host agents' certificates must chain to (default: the system's roots) ($FOREWARM_AGENT_CA)")
	fs.BoolVar(&a.Insecure, "agent-insecure", Env("FOREWARM_AGENT_INSECURE", "false") == "true", "allow plain http:// to host agents that are not on loopback (their token crosses the network in clear) ($FOREWARM_AGENT_INSECURE)")
	fs.StringVar(&a.URLAllow, "agent-url-allow", Env("FOREWARM_AGENT_URL_ALLOW", agentclient.DefaultAllowURL), "regular expression every host agent URL must match (whole URL; {host} stands for the host ID), e.g. 'https://{host}\\.agents\\.example\\.com:7071'; the default allows loopback only. With --agent-root-secret-file an agent off loopback is called only at a URL bound to its host ID: through {host} here, or through --agent-tls-name ($FOREWARM_AGENT_URL_ALLOW)")
	fs.StringVar(&a.TLSName, "agent-tls-name", os.Getenv("FOREWARM_AGENT_TLS_NAME"), "name an https:// host agent's certificate must carry instead of its URL's host, {host} standing for the host ID (e.g. '{host}' or '{host}.agents.example.com'): agents registered at any allowed address, such as a pod IP, prove which host they are before its token is sent ($FOREWARM_AGENT_TLS_NAME)")
}

// Load reads the secret files (or their environment variables) named by
// the flags.
func (a *Agents) Load() error {
	if a.RootSecretFile != "" {
		b, err := os.ReadFile(a.RootSecretFile)
		if err != nil {
			return fmt.Errorf("--agent-root-secret-file: %w", err)
		}
		a.RootSecret = strings.TrimSpace(string(b))
	} else if a.RootSecret == "" {
		a.RootSecret = strings.TrimSpace(os.Getenv("FOREWARM_AGENT_ROOT_SECRET"))
	}
	if a.TokenFile != "" {
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return fmt.Errorf("--agent-token-file: %w", err)
		}
		a.Token = strings.TrimSpace(string(b))
	} else if a.RootSecret == "" && a.Token == "" {
		a.Token = strings.TrimSpace(os.Getenv("HOSTAGENT_TOKEN"))
	}
	return nil
}

// Trust checks the flags and builds what the agent clients need; an error
// names the flag.
func (a Agents) Trust() (*agentclient.Trust, error) {
	if a.RootSecret != "" && a.Token != "" {
		return nil, errors.New("--agent-root-secret-file and --agent-token-file: give one (per-host tokens from the root secret, or one shared token)")
	}
	if a.RootSecret == "" && a.Token == "" {
		return nil, errors.New("no host agent credentials: give --agent-root-secret-file (or $FOREWARM_AGENT_ROOT_SECRET), or an older fleet's shared --agent-token-file")
	}
	t, err := agentclient.NewTrust(agentclient.TrustConfig{RootSecret: []byte(a.RootSecret), Token: a.Token,
		CAFile: a.CA, Insecure: a.Insecure, AllowURL: a.URLAllow, TLSName: a.TLSName})
	if err != nil {
		flag := "--agent-root-secret-file"
		switch {
		case strings.Contains(err.Error(), "allow pattern"):
			flag = "--agent-url-allow"
		case strings.Contains(err.Error(), "agent CA"):
			flag = "--agent-ca"
		case strings.Contains(err.Error(), "agent TLS name"):
			flag = "--agent-tls-name"
		case a.Token != "":
			flag = "--agent-token-file"
		}
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return t, nil
}

// Warning is what an operator should hear about a trust that works but is
// weaker than it could be, or "".
func (a Agents) Warning(t *agentclient.Trust) string {
	switch {
	case !t.PerHost():
		return "one bearer token shared by every host agent: a compromised host can call the others; give --agent-root-secret-file"
	case !t.Binds():
		return "no agent URL off loopback is bound to its host ID, so only agents on loopback are called: put {host} in --agent-url-allow, or give the agents certificates naming their host IDs and set --agent-tls-name"
	}
	return ""
}
