package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

// With TLSName "{host}" an https agent is called at any allowed address
// (its pod IP) but must present a certificate naming its host ID: the
// token goes only to the holder of that host's certificate.
func TestTrustBindsTheTokenToTheHostsCertificate(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	cert, caFile := certFor(t, dir, "host-a")
	srv := httptest.NewUnstartedServer(mustHandler(t, "host-a"))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	tr := newTrust(t, client.TrustConfig{RootSecret: rootSecret, CAFile: caFile, TLSName: "{host}", AllowURL: `https://[0-9.]+:[0-9]+`})
	if !tr.Binds() {
		t.Error("a TLS name with {host} binds")
	}
	c, err := tr.Client("host-a", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(ctx); err != nil || info.HostID != "host-a" {
		t.Errorf("host-a presenting its own certificate: %+v, %v", info, err)
	}
	// A registration naming host-b at host-a's address: host-a's agent
	// cannot prove to be host-b, and the call fails before any token.
	c, err = tr.Client("host-b", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(ctx); err == nil || !strings.Contains(err.Error(), "certificate is valid for host-a, not host-b") {
		t.Errorf("host-b's token to host-a's certificate: %v, want a certificate name error", err)
	}
	// Plain HTTP carries no certificate: nothing binds it.
	insecure := newTrust(t, client.TrustConfig{RootSecret: rootSecret, TLSName: "{host}", AllowURL: `https?://[0-9.]+:[0-9]+`, Insecure: true})
	if _, err := insecure.Client("host-b", "http://10.1.2.3:7071"); client.Code(err) != client.CodeURLNotBound {
		t.Errorf("plain HTTP with a TLS name: %v, want url_not_bound", err)
	}
	// Neither the pattern nor a TLS name names the host.
	if newTrust(t, client.TrustConfig{RootSecret: rootSecret, AllowURL: `https://[0-9.]+:[0-9]+`}).Binds() {
		t.Error("a pattern and TLS name without {host} bind nothing")
	}
}

func mustHandler(t *testing.T, id string) http.Handler {
	t.Helper()
	a, err := agent.New(agent.Config{HostID: id, DataDir: t.TempDir(), MemoryMB: 256, DiskMB: 256, CPUMilli: 2000, DefaultTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	h, err := a.Handler(api.DeriveToken(rootSecret, id))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// certFor makes a CA and a server certificate for the DNS name host (and
// 127.0.0.1), and writes the CA to a PEM file.
func certFor(t *testing.T, dir, host string) (tls.Certificate, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agents CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{host}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}
