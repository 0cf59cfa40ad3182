package config_test

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/internal/testenv"
)

// clearTemporalEnv unsets every TEMPORAL_* variable for the test (restored
// after it) and points TEMPORAL_CONFIG_FILE at a file that does not exist,
// so neither the developer's environment nor their temporal.toml leaks in.
func clearTemporalEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "TEMPORAL_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("TEMPORAL_CONFIG_FILE", filepath.Join(t.TempDir(), "none.toml"))
}

// temporalFromFlags registers the flags (reading the environment), parses
// args and builds the client options, returning what was logged.
func temporalFromFlags(t *testing.T, args ...string) (client.Options, string, error) {
	t.Helper()
	var tc config.Temporal
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	tc.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	opts, err := tc.ClientOptions(slog.New(slog.NewTextHandler(&logs, nil)))
	return opts, logs.String(), err
}

// checkTLS fails unless opts carry TLS with the PKI's client certificate,
// a pool holding only its CA, and serverName.
func checkTLS(t *testing.T, opts client.Options, pki testenv.PKI, serverName string) {
	t.Helper()
	tc := opts.ConnectionOptions.TLS
	if tc == nil {
		t.Fatal("no TLS config")
	}
	if len(tc.Certificates) != 1 || !bytes.Equal(tc.Certificates[0].Certificate[0], pki.LeafCert.Raw) {
		t.Errorf("client certificate not loaded: %d certificates", len(tc.Certificates))
	}
	if tc.RootCAs == nil {
		t.Fatal("no CA pool")
	}
	if _, err := pki.LeafCert.Verify(x509.VerifyOptions{Roots: tc.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the CA pool does not verify a certificate of the CA: %v", err)
	}
	if tc.ServerName != serverName {
		t.Errorf("ServerName = %q, want %q", tc.ServerName, serverName)
	}
	if tc.InsecureSkipVerify {
		t.Error("host verification disabled")
	}
}

func TestTemporalFromStandardEnvironment(t *testing.T) {
	clearTemporalEnv(t)
	pki := testenv.NewPKI(t, "frontend.example")
	t.Setenv("TEMPORAL_ADDRESS", "frontend.example:7233")
	t.Setenv("TEMPORAL_NAMESPACE", "prod.ns")
	t.Setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", pki.Cert)
	t.Setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", pki.Key)
	t.Setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", pki.CA)
	t.Setenv("TEMPORAL_TLS_SERVER_NAME", "frontend.example")
	t.Setenv("TEMPORAL_GRPC_META_X_TENANT", "blue")
	opts, logs, err := temporalFromFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != "frontend.example:7233" || opts.Namespace != "prod.ns" {
		t.Errorf("HostPort %q, Namespace %q", opts.HostPort, opts.Namespace)
	}
	checkTLS(t, opts, pki, "frontend.example")
	if opts.HeadersProvider == nil {
		t.Error("TEMPORAL_GRPC_META_* headers lost")
	} else if h, _ := opts.HeadersProvider.GetHeaders(t.Context()); h["x-tenant"] != "blue" {
		t.Errorf("headers %v, want x-tenant=blue", h)
	}
	if opts.Credentials != nil {
		t.Error("credentials without an API key")
	}
	if logs != "" {
		t.Errorf("warnings with the standard names only: %s", logs)
	}
}

func TestTemporalDefaultsPlainLocal(t *testing.T) {
	clearTemporalEnv(t)
	// Empty variables (a ConfigMap's unused keys) count as unset.
	t.Setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", "")
	t.Setenv("TEMPORAL_TLS_SERVER_NAME", "")
	opts, _, err := temporalFromFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != "127.0.0.1:7233" || opts.Namespace != "default" || opts.ConnectionOptions.TLS != nil {
		t.Errorf("defaults: %q %q TLS %v", opts.HostPort, opts.Namespace, opts.ConnectionOptions.TLS)
	}
}

func TestTemporalFromConfigFileProfile(t *testing.T) {
	clearTemporalEnv(t)
	pki := testenv.NewPKI(t, "cloud.example")
	file := filepath.Join(t.TempDir(), "temporal.toml")
	toml := `
[profile.default]
address = "127.0.0.1:7233"

[profile.cloud]
address = "ns1.a1b2c.tmprl.cloud:7233"
namespace = "ns1.a1b2c"

[profile.cloud.tls]
client_cert_path = "` + pki.Cert + `"
client_key_path = "` + pki.Key + `"
server_ca_cert_path = "` + pki.CA + `"
server_name = "cloud.example"
`
	if err := os.WriteFile(file, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEMPORAL_CONFIG_FILE", file)
	t.Setenv("TEMPORAL_PROFILE", "cloud")
	opts, _, err := temporalFromFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != "ns1.a1b2c.tmprl.cloud:7233" || opts.Namespace != "ns1.a1b2c" {
		t.Errorf("HostPort %q, Namespace %q", opts.HostPort, opts.Namespace)
	}
	checkTLS(t, opts, pki, "cloud.example")

	// The environment overrides the profile, and the flags both.
	t.Setenv("TEMPORAL_NAMESPACE", "from-env")
	opts, _, err = temporalFromFlags(t, "--temporal-address=10.0.0.1:7233")
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != "10.0.0.1:7233" || opts.Namespace != "from-env" {
		t.Errorf("overrides: HostPort %q, Namespace %q", opts.HostPort, opts.Namespace)
	}

	t.Setenv("TEMPORAL_PROFILE", "missing")
	if _, _, err := temporalFromFlags(t); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a profile not in the file: err %v", err)
	}
}

func TestTemporalFlagsOverrideEnvironment(t *testing.T) {
	clearTemporalEnv(t)
	envPKI := testenv.NewPKI(t, "env.example")
	flagPKI := testenv.NewPKI(t, "flag.example")
	t.Setenv("TEMPORAL_ADDRESS", "env.example:7233")
	t.Setenv("TEMPORAL_NAMESPACE", "env-ns")
	t.Setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", envPKI.Cert)
	t.Setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", envPKI.Key)
	t.Setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", envPKI.CA)
	t.Setenv("TEMPORAL_TLS_SERVER_NAME", "env.example")
	opts, _, err := temporalFromFlags(t,
		"--temporal-address=flag.example:7233", "--temporal-namespace=flag-ns",
		"--temporal-tls-cert="+flagPKI.Cert, "--temporal-tls-key="+flagPKI.Key,
		"--temporal-tls-ca="+flagPKI.CA, "--temporal-tls-server-name=flag.example")
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != "flag.example:7233" || opts.Namespace != "flag-ns" {
		t.Errorf("HostPort %q, Namespace %q", opts.HostPort, opts.Namespace)
	}
	checkTLS(t, opts, flagPKI, "flag.example")

	opts, _, err = temporalFromFlags(t, "--temporal-tls=false")
	if err != nil {
		t.Fatal(err)
	}
	if !opts.ConnectionOptions.TLSDisabled {
		t.Error("--temporal-tls=false left TLS on")
	}

	t.Setenv("TEMPORAL_API_KEY", "k")
	t.Setenv("TEMPORAL_TLS", "false")
	opts, _, err = temporalFromFlags(t, "--temporal-api-key=from-flag")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Credentials == nil || !opts.ConnectionOptions.TLSDisabled {
		t.Errorf("API key with TEMPORAL_TLS=false: credentials %v, TLS disabled %v", opts.Credentials, opts.ConnectionOptions.TLSDisabled)
	}
}

func TestTemporalDeprecatedVariablesWarn(t *testing.T) {
	clearTemporalEnv(t)
	pki := testenv.NewPKI(t, "old.example")
	t.Setenv("TEMPORAL_TLS_CERT", pki.Cert)
	t.Setenv("TEMPORAL_TLS_KEY", pki.Key)
	t.Setenv("TEMPORAL_TLS_CA", pki.CA)
	t.Setenv("TEMPORAL_TLS_SERVER_NAME", "old.example")
	opts, logs, err := temporalFromFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	checkTLS(t, opts, pki, "old.example")
	for old, std := range config.DeprecatedTemporalEnv {
		if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "$"+old+" is deprecated: set $"+std) {
			t.Errorf("no warning naming $%s for $%s in %q", std, old, logs)
		}
	}

	// With both, the standard one wins, and the old one is called ignored.
	other := testenv.NewPKI(t, "old.example")
	t.Setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", other.CA)
	opts, logs, err = temporalFromFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.LeafCert.Verify(x509.VerifyOptions{Roots: opts.ConnectionOptions.TLS.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("TEMPORAL_TLS_SERVER_CA_CERT_PATH did not win over TEMPORAL_TLS_CA: %v", err)
	}
	if !strings.Contains(logs, "$TEMPORAL_TLS_CA is deprecated and ignored: $TEMPORAL_TLS_SERVER_CA_CERT_PATH is set") {
		t.Errorf("logs %q", logs)
	}
}

func TestTemporalBadFilesNameTheFlag(t *testing.T) {
	clearTemporalEnv(t)
	missing := filepath.Join(t.TempDir(), "nope.pem")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--temporal-tls-ca=" + missing}, "--temporal-tls-ca"},
		{[]string{"--temporal-tls-cert=" + missing, "--temporal-tls-key=" + missing}, "--temporal-tls-cert/--temporal-tls-key"},
		{[]string{"--temporal-tls-cert=" + missing}, "must be given together"},
	} {
		if _, _, err := temporalFromFlags(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want it to name %s", c.args, err, c.want)
		}
	}
}

func TestHintsNameTheSettingsOffTheLocalStack(t *testing.T) {
	local := config.ClickHouse{Addr: config.DefaultClickHouseAddr}
	remote := config.ClickHouse{Addr: "ch.prod:9440", TLS: true}
	if h := local.Hint(); !strings.Contains(h, "make up") || !strings.Contains(h, "--clickhouse-addr") {
		t.Errorf("local ClickHouse hint %q", h)
	}
	if h := remote.Hint(); !strings.HasPrefix(h, "set --clickhouse-addr / $CLICKHOUSE_ADDR") || !strings.Contains(h, "--clickhouse-tls") {
		t.Errorf("remote ClickHouse hint %q", h)
	}
	if h := (config.Temporal{Address: "127.0.0.1:7233"}).Hint(); !strings.Contains(h, "make up") {
		t.Errorf("local Temporal hint %q", h)
	}
	if h := (config.Temporal{Address: "ns.tmprl.cloud:7233"}).Hint(); !strings.HasPrefix(h, "set --temporal-address / $TEMPORAL_ADDRESS") {
		t.Errorf("remote Temporal hint %q", h)
	}
}

// Every client the settings build (and every worker built on one) reads
// and writes payloads in the operator JSON style.
func TestTemporalClientsUseTheOneDataConverter(t *testing.T) {
	clearTemporalEnv(t)
	opts, _, err := temporalFromFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	if opts.DataConverter != payload.Converter() {
		t.Errorf("DataConverter = %T, want payload.Converter()", opts.DataConverter)
	}
}
