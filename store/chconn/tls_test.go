package chconn_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/chconn"
)

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// tlsClickHouse starts a clickhouse-server of its own (the binary the
// local stack uses, deploy/clickhouse's config) whose native protocol also
// listens with TLS, on fresh loopback ports, with a certificate of pki.
// With requireClientCert it accepts only clients with a certificate of
// pki's CA. It returns the plain and the TLS address; the server is
// stopped when the test ends.
func tlsClickHouse(t *testing.T, pki testenv.PKI, requireClientCert bool) (plain, secure string) {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		testenv.Missing(t, "clickhouse-server (deploy/local/install.sh clickhouse)", err)
	}
	tmpl, err := os.ReadFile(filepath.Join("..", "..", "deploy", "clickhouse", "config.xml"))
	if err != nil {
		t.Fatal(err)
	}
	users, err := os.ReadFile(filepath.Join("..", "..", "deploy", "clickhouse", "users.xml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ports := freePorts(t, 3)
	mode := "relaxed"
	if requireClientCert {
		mode = "strict"
	}
	secureConf := `    <tcp_port_secure>` + strconv.Itoa(ports[2]) + `</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>` + pki.Cert + `</certificateFile>
            <privateKeyFile>` + pki.Key + `</privateKeyFile>
            <caConfig>` + pki.CA + `</caConfig>
            <verificationMode>` + mode + `</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
</yandex>`
	conf := strings.NewReplacer(
		"@DIR@", dir, "@LOGS@", filepath.Join(dir, "logs"), "@NAME@", "clickhouse",
		"@TCP_PORT@", strconv.Itoa(ports[0]), "@HTTP_PORT@", strconv.Itoa(ports[1]),
		"</yandex>", secureConf,
	).Replace(string(tmpl))
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), users, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	out, err := os.Create(filepath.Join(dir, "logs", "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		out.Close()
	})
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "logs", "clickhouse.err.log"))
		s, _ := os.ReadFile(filepath.Join(dir, "logs", "stdout.log"))
		return string(b) + string(s)
	}
	plain = "127.0.0.1:" + strconv.Itoa(ports[0])
	secure = "127.0.0.1:" + strconv.Itoa(ports[2])
	for deadline := time.Now().Add(60 * time.Second); ; {
		if testenv.Dialable(secure) == nil && testenv.Dialable(plain) == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("clickhouse-server exited (%v):\n%s", err, logs())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("clickhouse-server did not listen on %s within 60s:\n%s", secure, logs())
		}
	}
	t.Logf("clickhouse-server with TLS on %s up in %v", secure, time.Since(start).Round(time.Millisecond))
	return plain, secure
}

func TestDialOverTLS(t *testing.T) {
	pki := testenv.NewPKI(t, "clickhouse.test")
	plain, secure := tlsClickHouse(t, pki, true)
	ctx := t.Context()
	base := config.ClickHouse{Addr: secure, Database: "default", User: "default"}

	// From the environment, as a program would read it.
	t.Setenv("CLICKHOUSE_ADDR", secure)
	t.Setenv("CLICKHOUSE_DATABASE", "default")
	t.Setenv("CLICKHOUSE_USER", "default")
	t.Setenv("CLICKHOUSE_PASSWORD", "")
	t.Setenv("CLICKHOUSE_TLS", "true")
	t.Setenv("CLICKHOUSE_TLS_CA", pki.CA)
	t.Setenv("CLICKHOUSE_TLS_CERT", pki.Cert)
	t.Setenv("CLICKHOUSE_TLS_KEY", pki.Key)
	t.Setenv("CLICKHOUSE_TLS_SERVER_NAME", "clickhouse.test")
	cfg := config.ClickHouseFromEnv()
	conn, err := chconn.Dial(ctx, cfg, "default")
	if err != nil {
		t.Fatalf("dial over TLS with a client certificate: %v", err)
	}
	var one uint8
	var version string
	if err := conn.QueryRow(ctx, "SELECT 1, version()").Scan(&one, &version); err != nil || one != 1 {
		t.Fatalf("SELECT 1 over TLS: %d, %v", one, err)
	}
	t.Logf("ClickHouse %s over TLS", version)
	conn.Close()

	// The programs' path: the migration, then the store's schema check.
	mig := cfg
	mig.Database = "forewarm_tls"
	if _, err := store.Migrate(ctx, mig); err != nil {
		t.Fatalf("migrate over TLS: %v", err)
	}
	st, err := store.Open(ctx, mig)
	if err != nil {
		t.Fatalf("store.Open over TLS: %v", err)
	}
	st.Close()

	// Each setting matters: without the CA the server is not trusted,
	// without the client certificate the server (strict) refuses, plain
	// TCP to the TLS port gets no answer, and TLS to the plain port none.
	noCA := cfg
	noCA.TLSCA = ""
	noCert := cfg
	noCert.TLSCert, noCert.TLSKey = "", ""
	wrongName := cfg
	wrongName.TLSServerName = "other.test"
	noTLS := base
	tlsToPlain := cfg
	tlsToPlain.Addr = plain
	for _, c := range []struct {
		name string
		cfg  config.ClickHouse
		want string
	}{
		{"no CA", noCA, "unknown authority"},
		// TLS 1.3 sends the refusal after the handshake: the client
		// reads the alert, or finds the connection reset.
		{"no client certificate", noCert, "certificate required|connection reset"},
		{"wrong server name", wrongName, "not other.test"},
		{"plain to the TLS port", noTLS, "cannot reach ClickHouse"},
		{"TLS to the plain port", tlsToPlain, "does not look like a TLS handshake"},
	} {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		conn, err := chconn.Dial(ctx, c.cfg, "default")
		cancel()
		if err == nil {
			conn.Close()
			t.Errorf("%s: connected", c.name)
		} else if !containsAny(err.Error(), strings.Split(c.want, "|")) || !strings.Contains(err.Error(), "--clickhouse-tls") {
			t.Errorf("%s: %v, want %q and the settings named", c.name, err, c.want)
		}
	}
}

func TestTLSFilesNameTheirFlag(t *testing.T) {
	pki := testenv.NewPKI(t, "clickhouse.test")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, c := range []struct {
		cfg  config.ClickHouse
		want string
	}{
		{config.ClickHouse{TLSCA: missing}, "--clickhouse-tls-ca"},
		{config.ClickHouse{TLSCA: pki.Key}, "--clickhouse-tls-ca"},
		{config.ClickHouse{TLSCert: missing, TLSKey: pki.Key}, "--clickhouse-tls-cert/--clickhouse-tls-key"},
		{config.ClickHouse{TLSCert: pki.Cert}, "--clickhouse-tls-key"},
	} {
		c.cfg.Addr = "127.0.0.1:1"
		_, err := chconn.Dial(t.Context(), c.cfg, "default")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want it to name %s", c.cfg, err, c.want)
		}
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			t.Errorf("%+v: dialled before checking the files: %v", c.cfg, err)
		}
	}
	t.Setenv("CLICKHOUSE_TLS", "maybe")
	if _, err := config.ClickHouseFromEnv().TLSConfig(); err == nil || !strings.Contains(err.Error(), "CLICKHOUSE_TLS") {
		t.Errorf("CLICKHOUSE_TLS=maybe: %v", err)
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
