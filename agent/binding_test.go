package agent_test

import (
	"strings"
	"testing"

	"github.com/forewarm/forewarm/agent/client"
)

// A compromised node registers host-b's ID with its own URL: with per-host
// tokens the worker must not build a client that would send host-b's token
// there. The Kubernetes manifests' pattern (any pod IP) admits any node's
// URL for any host ID, so it binds nothing: refused as not bound.
func TestTrustSendsNoTokenToAURLNotBoundToTheHost(t *testing.T) {
	podIP := `http://[0-9]{1,3}(\.[0-9]{1,3}){3}:7071`
	anyPod := newTrust(t, client.TrustConfig{RootSecret: rootSecret, AllowURL: podIP, Insecure: true})
	c, err := anyPod.Client("host-b", "http://10.1.2.3:7071") // the forger's pod
	if c != nil || client.Code(err) != "url_not_bound" || !client.IsPermanent(err) {
		t.Fatalf("host-b's token for a URL any node can register: client %v, %v; want a permanent url_not_bound refusal", c != nil, err)
	}
	if !strings.Contains(err.Error(), "{host}") {
		t.Errorf("the refusal should say how to bind URLs to hosts: %v", err)
	}
	// An alternation that lets any address through binds nothing either.
	loose := newTrust(t, client.TrustConfig{RootSecret: rootSecret, AllowURL: `http://({host}|[0-9.]+):7071`, Insecure: true})
	if _, err := loose.Client("host-b", "http://10.1.2.3:7071"); client.Code(err) != "url_not_bound" {
		t.Errorf("a URL the pattern admits for every host ID: %v, want url_not_bound", err)
	}
	// The host's own name, through {host}: bound.
	if _, err := loose.Client("host-b", "http://host-b:7071"); err != nil {
		t.Errorf("host-b at its own name: %v", err)
	}
	named := newTrust(t, client.TrustConfig{RootSecret: rootSecret, AllowURL: `http://{host}:7071`, Insecure: true})
	if _, err := named.Client("host-b", "http://host-a:7071"); client.Code(err) != client.CodeURLNotAllowed {
		t.Errorf("host-b at host-a's name: %v, want url_not_allowed", err)
	}
	// Loopback is this machine, which holds the root secret: the local stack.
	local := newTrust(t, client.TrustConfig{RootSecret: rootSecret})
	if _, err := local.Client("host-b", "http://127.0.0.1:7072"); err != nil {
		t.Errorf("a local agent: %v", err)
	}
	// One shared token: every agent holds it already, nothing to bind.
	shared := newTrust(t, client.TrustConfig{Token: "shared-token-0123456789", AllowURL: podIP, Insecure: true})
	if _, err := shared.Client("host-b", "http://10.1.2.3:7071"); err != nil {
		t.Errorf("shared token: %v", err)
	}
}
