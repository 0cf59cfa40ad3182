package main_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/storetest"
)

const token = "hostagent-test-token-0123456789"

var binary string

// TestMain builds the real binary once; the tests run it as a process.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hostagent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "hostagent")
	if out, err := exec.Command("go", "build", "-buildvcs=false", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build hostagent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	testenv.RemoveInstApp()
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// syncBuffer is the agent's output, read by a test while the agent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs the agent with args and waits until it answers /healthz.
func start(t *testing.T, scheme, addr string, c *client.Client, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--listen", addr, "--log-level", "debug"}, args...)...)
	cmd.Env = append(os.Environ(), "HOSTAGENT_TOKEN="+token)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("agent output:\n%s", out)
		}
	})
	if c == nil {
		c = client.New(scheme+"://"+addr, token)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Health(ctx)
		cancel()
		if err == nil {
			return p
		}
		select {
		case err := <-p.done:
			t.Fatalf("agent exited before answering: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not healthy after 15 s: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestHelpAndBadFlags(t *testing.T) {
	out, err := exec.Command(binary, "--help").Output()
	for _, want := range []string{"--memory-mb", "$HOSTAGENT_SPEED", "POST   /v1/leases/{id}/extend", "keep_ttl_seconds",
		"hex(HMAC-SHA256(root secret, host ID))", "lease_busy", "one request per whole core",
		"--spec-dir", "/v1/instances/{id}/http/{path}", "Forewarm-Sent", "SIGHUP"} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("--help lacks %q: %v\n%s", want, err, out)
		}
	}
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, "unknown flag: --bogus"},
		{"no token", nil, []string{"HOSTAGENT_TOKEN="}, "no bearer token"},
		{"short token", nil, []string{"HOSTAGENT_TOKEN=short"}, "at least 16 characters"},
		{"missing token file", []string{"--token-file", "/nonexistent/token"}, nil, "--token-file"},
		{"bad env number", nil, []string{"HOSTAGENT_MEMORY_MB=lots"}, "$HOSTAGENT_MEMORY_MB"},
		{"bad speed", []string{"--speed", "3"}, nil, "speed 3 is outside (0, 1]"},
		{"negative memory", []string{"--memory-mb", "-5"}, nil, "memory capacity -5 MB"},
		{"memory neither number nor cgroup", []string{"--memory-mb", "8G"}, nil, `--memory-mb "8G": want a number of MB or "cgroup"`},
		// Refused here either way: no limit, or one below an exabyte of overhead.
		{"cgroup capacity not possible", []string{"--memory-mb", "cgroup", "--memory-overhead-mb", "1000000000000"}, nil, "--memory-mb cgroup: "},
		{"unsafe host ID", []string{"--host-id", "../x"}, nil, "--host-id"},
		{"cert without key", []string{"--tls-cert", "c.pem"}, nil, "--tls-cert and --tls-key"},
		{"bad advertise URL", []string{"--advertise-url", "127.0.0.1:1"}, nil, "--advertise-url"},
		{"stray argument", []string{"serve"}, nil, "unexpected argument"},
		{"print token without secret", []string{"--print-token"}, nil, "--print-token and --root-secret-file go together"},
		{"root secret on a host", []string{"--root-secret-file", "/etc/hostname"}, nil, "--print-token and --root-secret-file go together"},
		{"world-writable data folder", []string{"--data-dir", openDir(t)}, nil, "writable by group or others"},
		{"missing spec folder", []string{"--spec-dir", "/nonexistent/specs"}, nil, "application specs"},
	}
	for _, c := range cases {
		cmd := exec.Command(binary, append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, c.args...)...)
		cmd.Env = append(append(os.Environ(), "HOSTAGENT_TOKEN="+token), c.env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: %v, output %q; want exit 2 mentioning %q", c.name, err, out, c.want)
		}
	}
}

// openDir is a folder anyone may write into: no place for lease files.
func openDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

// The provisioning step prints a host's token from the root secret; the
// agent given that token lets in the worker deriving the same, and refuses
// the token of another host.
func TestPrintTokenAndPerHostCredentials(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "root-secret")
	root := "fleet-root-secret-for-the-test-0123"
	if err := os.WriteFile(secret, []byte(root+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "--print-token", "--host-id", "h1", "--root-secret-file", secret).Output()
	if err != nil || strings.TrimSpace(string(out)) != api.DeriveToken([]byte(root), "h1") {
		t.Fatalf("--print-token = %q, %v; want the derived token", out, err)
	}
	tokFile := filepath.Join(dir, "h1.token")
	if err := os.WriteFile(tokFile, out, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	url := "http://" + addr
	trust, err := client.NewTrust(client.TrustConfig{RootSecret: []byte(root)})
	if err != nil {
		t.Fatal(err)
	}
	worker, err := trust.Client("h1", url)
	if err != nil {
		t.Fatal(err)
	}
	start(t, "http", addr, worker, "--host-id", "h1", "--data-dir", filepath.Join(dir, "data"), "--token-file", tokFile)
	ctx := ctxT(t)
	if _, err := worker.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app", MemoryMB: 4}); err != nil {
		t.Errorf("the worker with h1's derived token: %v", err)
	}
	other, err := trust.Client("h2", url) // a registry row naming h2 at h1's address
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Leases(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("h2's token at h1: %v, want unauthorized", err)
	}
}

// Without --data-dir the agent keeps its files under $XDG_STATE_HOME, in a
// folder of its own (0700), not in the shared temporary folder.
func TestDefaultDataFolder(t *testing.T) {
	state := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(binary, "--listen", addr, "--host-id", "dflt")
	cmd.Env = append(os.Environ(), "HOSTAGENT_TOKEN="+token, "XDG_STATE_HOME="+state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	c := client.New("http://"+addr, token)
	ctx := ctxT(t)
	deadline := time.Now().Add(15 * time.Second)
	for c.Health(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("agent not healthy:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app", MemoryMB: 1, DiskMB: 1}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(state, "forewarm-agent", "dflt")
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 || !exists(filepath.Join(dir, "fw-lease-p1.dat")) {
		t.Errorf("data folder %s: %v, %v; want 0700 holding the lease file", dir, fi, err)
	}
	if info, err := c.Info(ctx); err != nil || info.DataDir != dir {
		t.Errorf("info = %+v, %v; want data folder %s", info, err, dir)
	}
}

func TestRestartAfterCrashRemovesStaleFiles(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	c := client.New("http://"+addr, token)
	ctx := ctxT(t)
	p := start(t, "http", addr, nil, "--data-dir", dir, "--host-id", "crashy")
	for _, id := range []string{"p1", "p2"} {
		if _, err := c.Reserve(ctx, client.ReserveRequest{PreparationID: id, App: "app-a", MemoryMB: 8, DiskMB: 8}); err != nil {
			t.Fatal(err)
		}
	}
	keep := filepath.Join(dir, "not-ours.dat")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A crash: no chance to clean up.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil // let the cleanup's wait return
	if !exists(filepath.Join(dir, "fw-lease-p1.dat")) {
		t.Fatal("the crashed agent's lease file is not there; the test proves nothing")
	}
	start(t, "http", addr, nil, "--data-dir", dir, "--host-id", "crashy")
	for _, id := range []string{"p1", "p2"} {
		if exists(filepath.Join(dir, "fw-lease-"+id+".dat")) {
			t.Errorf("stale lease file %s survived the restart", id)
		}
	}
	if !exists(keep) {
		t.Error("a file that is not the agent's was removed")
	}
	if ls, err := c.Leases(ctx); err != nil || len(ls) != 0 {
		t.Errorf("leases after restart: %v, %v", ls, err)
	}
}

func TestSIGTERMAndSIGINTReleaseEveryLease(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) { testSignalReleases(t, sig) })
	}
}

func testSignalReleases(t *testing.T, sig syscall.Signal) {
	dir := t.TempDir()
	addr := freeAddr(t)
	c := client.New("http://"+addr, token)
	ctx := ctxT(t)
	p := start(t, "http", addr, nil, "--data-dir", dir)
	for _, id := range []string{"p1", "p2", "p3"} {
		if _, err := c.Reserve(ctx, client.ReserveRequest{PreparationID: id, App: "app-a", MemoryMB: 8, DiskMB: 8}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("agent exited with %v after %v\n%s", err, sig, p.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not stop within 20 s of %v", sig)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("files left after %v: %v", sig, entries)
	}
	if !strings.Contains(p.out.String(), "released every lease on shutdown") {
		t.Errorf("shutdown log lacks the release:\n%s", p.out)
	}
}

// The metrics listener answers GET /metrics without a token and nothing
// else: none of the API, not even with the token.
func TestMetricsListenerServesOnlyMetrics(t *testing.T) {
	addr, maddr := freeAddr(t), freeAddr(t)
	start(t, "http", addr, nil, "--data-dir", t.TempDir(), "--metrics-listen", maddr, "--host-id", "metrics-host")
	get := func(method, url string, withToken bool) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if withToken {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("GET", "http://"+maddr+"/metrics", false)
	if code != http.StatusOK || !strings.Contains(body, `forewarm_agent_capacity_memory_bytes{host="metrics-host"}`) {
		t.Errorf("GET /metrics without a token on the metrics listener: %d\n%.300s", code, body)
	}
	for _, path := range []string{"/", "/v1/info", "/v1/leases", "/v1/metrics", "/v1/apps", "/v1/instances/x/http/", "/healthz", "/readyz", "/metrics/x"} {
		if code, body := get("GET", "http://"+maddr+path, true); code != http.StatusNotFound {
			t.Errorf("GET %s on the metrics listener: %d, want 404\n%.200s", path, code, body)
		}
	}
	for _, m := range []string{"POST", "DELETE"} {
		if code, _ := get(m, "http://"+maddr+"/v1/leases", true); code != http.StatusNotFound {
			t.Errorf("%s /v1/leases on the metrics listener: %d, want 404", m, code)
		}
		if code, _ := get(m, "http://"+maddr+"/metrics", true); code != http.StatusMethodNotAllowed {
			t.Errorf("%s /metrics on the metrics listener: %d, want 405", m, code)
		}
	}
	// The API's own /metrics still wants the token.
	if code, _ := get("GET", "http://"+addr+"/metrics", false); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics on the API without a token: %d, want 401", code)
	}
}

func TestServesTLSWithTheGivenCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	addr := freeAddr(t)
	tc, err := client.TLSConfigFromCA(certFile)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New("https://"+addr, token, client.WithTLSConfig(tc))
	start(t, "https", addr, c, "--data-dir", filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile)
	ctx := ctxT(t)
	if info, err := c.Info(ctx); err != nil || info.URL != "https://"+addr {
		t.Fatalf("info over TLS = %+v, %v", info, err)
	}
	if err := client.New("http://"+addr, token).Health(ctx); err == nil {
		t.Error("plain HTTP was answered by a TLS agent")
	}
	if err := client.New("https://"+addr, token).Health(ctx); err == nil {
		t.Error("a client that does not trust the certificate got through")
	}
	// The worker's trust: with --agent-ca the agent's certificate is
	// verified; with the system's roots it is not trusted.
	withCA, err := client.NewTrust(client.TrustConfig{Token: token, CAFile: certFile})
	if err != nil {
		t.Fatal(err)
	}
	wc, err := withCA.Client("tls-host", "https://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Info(ctx); err != nil {
		t.Errorf("worker trusting the agent's CA: %v", err)
	}
	noCA, err := client.NewTrust(client.TrustConfig{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := noCA.Client("tls-host", "https://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Info(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("worker without the agent's CA: %v, want a certificate error", err)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hostagent-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestRegistersAndReportsToClickHouse is the discovery path: an agent
// started with --advertise-url appears in store.Hosts with its capacity
// and speed, and its metrics in LatestHostMetrics, without anyone telling
// the engine about it.
func TestRegistersAndReportsToClickHouse(t *testing.T) {
	ch := storetest.Config(t)
	addr := freeAddr(t)
	url := "http://" + addr
	start(t, "http", addr, nil, "--data-dir", t.TempDir(), "--host-id", "reg-host",
		"--memory-mb", "300", "--disk-mb", "200", "--cpu-milli", "1500", "--speed", "0.5", "--labels", "zone=a",
		"--advertise-url", url, "--report-every", "1s",
		"--clickhouse-addr", ch.Addr, "--clickhouse-database", ch.Database, "--clickhouse-user", ch.User, "--clickhouse-password", ch.Password)
	ctx := ctxT(t)
	st, err := store.Open(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		hosts, herr := st.Hosts(ctx, time.Now().Add(-30*time.Second))
		metrics, merr := st.LatestHostMetrics(ctx)
		m, reported := metrics["reg-host"]
		if herr == nil && merr == nil && len(hosts) == 1 && reported {
			h := hosts[0]
			if h.ID != "reg-host" || h.URL != url || h.MemoryMB != 300 || h.DiskMB != 200 || h.CPUMilli != 1500 || h.Speed != 0.5 || h.Labels != "zone=a" {
				t.Errorf("registered host = %+v", h)
			}
			if m.MemAvailMB <= 0 || m.CPUUtil < 0 || m.CPUUtil > 1 {
				t.Errorf("reported metrics = %+v", m)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not in the registry after 30 s: hosts %v (%v), metrics %v (%v)", hosts, herr, metrics, merr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
