// Package config holds the connection settings every Forewarm program
// shares: flags whose defaults come from the environment, so the same binary
// runs against the local stack and a remote cluster unchanged.
package config

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// Env returns the environment variable key, or def when it is unset or empty.
func Env(key, def string) string {
	return cmp.Or(os.Getenv(key), def)
}

// Temporal says how to reach a Temporal frontend.
type Temporal struct {
	Address       string
	Namespace     string
	TLSCert       string
	TLSKey        string
	TLSCA         string
	TLSServerName string
	APIKey        string
}

// Flags registers the Temporal flags, defaulting to the standard TEMPORAL_*
// variables the Temporal CLI also reads.
func (t *Temporal) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&t.Address, "temporal-address", Env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port ($TEMPORAL_ADDRESS)")
	fs.StringVar(&t.Namespace, "temporal-namespace", Env("TEMPORAL_NAMESPACE", "default"), "Temporal namespace ($TEMPORAL_NAMESPACE)")
	fs.StringVar(&t.TLSCert, "temporal-tls-cert", Env("TEMPORAL_TLS_CERT", ""), "client certificate for mTLS ($TEMPORAL_TLS_CERT)")
	fs.StringVar(&t.TLSKey, "temporal-tls-key", Env("TEMPORAL_TLS_KEY", ""), "client key for mTLS ($TEMPORAL_TLS_KEY)")
	fs.StringVar(&t.TLSCA, "temporal-tls-ca", Env("TEMPORAL_TLS_CA", ""), "CA bundle to verify the server ($TEMPORAL_TLS_CA)")
	fs.StringVar(&t.TLSServerName, "temporal-tls-server-name", Env("TEMPORAL_TLS_SERVER_NAME", ""), "server name to verify ($TEMPORAL_TLS_SERVER_NAME)")
	fs.StringVar(&t.APIKey, "temporal-api-key", Env("TEMPORAL_API_KEY", ""), "API key, e.g. for Temporal Cloud ($TEMPORAL_API_KEY)")
}

// ClientOptions builds SDK client options from the settings.
func (t Temporal) ClientOptions(logger *slog.Logger) (client.Options, error) {
	opts := client.Options{HostPort: t.Address, Namespace: t.Namespace}
	if logger != nil {
		opts.Logger = tlog.NewStructuredLogger(logger)
	}
	if t.TLSCert != "" || t.TLSCA != "" || t.APIKey != "" || t.TLSServerName != "" {
		tc := &tls.Config{ServerName: t.TLSServerName, MinVersion: tls.VersionTLS12}
		if (t.TLSCert == "") != (t.TLSKey == "") {
			return opts, fmt.Errorf("--temporal-tls-cert and --temporal-tls-key must be given together")
		}
		if t.TLSCert != "" {
			pair, err := tls.LoadX509KeyPair(t.TLSCert, t.TLSKey)
			if err != nil {
				return opts, fmt.Errorf("--temporal-tls-cert/--temporal-tls-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		if t.TLSCA != "" {
			pem, err := os.ReadFile(t.TLSCA)
			if err != nil {
				return opts, fmt.Errorf("--temporal-tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return opts, fmt.Errorf("--temporal-tls-ca %s: no PEM certificate in it", t.TLSCA)
			}
			tc.RootCAs = pool
		}
		opts.ConnectionOptions.TLS = tc
	}
	if t.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(t.APIKey)
	}
	return opts, nil
}

// Dial connects to Temporal and checks the frontend answers; each of more
// may adjust the client options first (e.g. set a metrics handler).
func (t Temporal) Dial(logger *slog.Logger, more ...func(*client.Options)) (client.Client, error) {
	opts, err := t.ClientOptions(logger)
	if err != nil {
		return nil, err
	}
	for _, f := range more {
		f(&opts)
	}
	c, err := client.Dial(opts)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Temporal at %s (namespace %q): %w; is the stack up? try `make up`", t.Address, t.Namespace, err)
	}
	return c, nil
}

// ClickHouse says how to reach the metric store (native protocol).
type ClickHouse struct {
	Addr     string // host:port, or several separated by commas (replicas, tried in order)
	Database string
	User     string
	Password string
	// Cluster names the ClickHouse cluster (remote_servers) the schema is
	// replicated across; empty: one server, plain MergeTree tables.
	Cluster string
}

// Addrs splits Addr into its host:port entries.
func (c ClickHouse) Addrs() []string {
	var out []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// DefaultClickHouseAddr matches deploy/local/env.sh.
const DefaultClickHouseAddr = "127.0.0.1:19000"

// Flags registers the ClickHouse flags with CLICKHOUSE_* defaults.
func (c *ClickHouse) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Addr, "clickhouse-addr", Env("CLICKHOUSE_ADDR", DefaultClickHouseAddr), "ClickHouse native-protocol host:port; replicas as a comma-separated list, tried in order ($CLICKHOUSE_ADDR)")
	fs.StringVar(&c.Database, "clickhouse-database", Env("CLICKHOUSE_DATABASE", "forewarm"), "ClickHouse database ($CLICKHOUSE_DATABASE)")
	fs.StringVar(&c.User, "clickhouse-user", Env("CLICKHOUSE_USER", "default"), "ClickHouse user ($CLICKHOUSE_USER)")
	fs.StringVar(&c.Password, "clickhouse-password", Env("CLICKHOUSE_PASSWORD", ""), "ClickHouse password ($CLICKHOUSE_PASSWORD)")
	fs.StringVar(&c.Cluster, "clickhouse-cluster", Env("CLICKHOUSE_CLUSTER", ""), "ClickHouse cluster name: replicated tables behind Distributed ones, migrations ON CLUSTER; empty for one server ($CLICKHOUSE_CLUSTER)")
}

// ClickHouseFromEnv returns the ClickHouse settings the environment gives.
func ClickHouseFromEnv() ClickHouse {
	var c ClickHouse
	fs := pflag.NewFlagSet("", pflag.ContinueOnError)
	c.Flags(fs)
	return c
}

// ONNX says where the ONNX Runtime shared library is.
type ONNX struct {
	Lib string
}

// Flags registers --onnxruntime-lib with the ONNXRUNTIME_LIB default.
func (o *ONNX) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Lib, "onnxruntime-lib", Env("ONNXRUNTIME_LIB", DefaultORTLib()), "path of libonnxruntime.so ($ONNXRUNTIME_LIB)")
}

// DefaultORTLib finds the library `make up` installs, looking in .tools of
// the working directory and its parents (tests run inside package folders).
func DefaultORTLib() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		matches, _ := filepath.Glob(filepath.Join(dir, ".tools", "onnxruntime", "libonnxruntime.so*"))
		if len(matches) > 0 {
			return matches[len(matches)-1]
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// ORTLibFromEnv returns $ONNXRUNTIME_LIB or the project-local library.
func ORTLibFromEnv() string {
	return Env("ONNXRUNTIME_LIB", DefaultORTLib())
}
