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
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	tlog "go.temporal.io/sdk/log"

	"github.com/forewarm/forewarm/internal/payload"
)

// Env returns the environment variable key, or def when it is unset or empty.
func Env(key, def string) string {
	return cmp.Or(os.Getenv(key), def)
}

// Temporal says how to reach a Temporal frontend.
//
// Its defaults come from Temporal's own environment configuration, the same
// the Temporal CLI and SDKs read (go.temporal.io/sdk/contrib/envconfig): the
// profile $TEMPORAL_PROFILE (else "default") of the TOML file
// $TEMPORAL_CONFIG_FILE (else the user's temporalio/temporal.toml), then
// $TEMPORAL_ADDRESS, $TEMPORAL_NAMESPACE, $TEMPORAL_API_KEY, $TEMPORAL_TLS,
// $TEMPORAL_TLS_CLIENT_CERT_PATH, $TEMPORAL_TLS_CLIENT_KEY_PATH,
// $TEMPORAL_TLS_SERVER_CA_CERT_PATH, $TEMPORAL_TLS_SERVER_NAME,
// $TEMPORAL_TLS_DISABLE_HOST_VERIFICATION (and the *_DATA, gRPC-meta and
// authority variables envconfig knows) over it. A variable set to the empty
// string counts as unset, as for every other Forewarm setting. The flags
// override all of it.
type Temporal struct {
	Address       string
	Namespace     string
	TLSCert       string
	TLSKey        string
	TLSCA         string
	TLSServerName string
	APIKey        string
	// TLS turns TLS on even with none of the files above (a server whose
	// certificate the system roots verify). A certificate, CA, server name
	// or API key turns it on too, unless TLS is explicitly off (--temporal-tls=false
	// or TEMPORAL_TLS=false).
	TLS bool
	// TLSDisableHostVerification skips verifying the server's certificate.
	TLSDisableHostVerification bool

	// Set by Flags: the envconfig profile the defaults came from (it may
	// hold inline certificate data no flag shows), what loading it said,
	// and the flag set, to tell which flags were given.
	profile  *envconfig.ClientConfigProfile
	loadErr  error
	warnings []string
	fs       *pflag.FlagSet
}

// TemporalEnv are Temporal's standard variables, read through the SDK's
// envconfig (with the profile of TEMPORAL_CONFIG_FILE): listed here for
// the help text and the deployment tests, which check that a manifest sets
// only what a program reads.
var TemporalEnv = []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS",
	"TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
	"TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE"}

// DeprecatedTemporalEnv maps the variables older releases read to
// Temporal's standard names. The old ones are still read (with a warning)
// when the new one is unset.
var DeprecatedTemporalEnv = map[string]string{
	"TEMPORAL_TLS_CERT": "TEMPORAL_TLS_CLIENT_CERT_PATH",
	"TEMPORAL_TLS_KEY":  "TEMPORAL_TLS_CLIENT_KEY_PATH",
	"TEMPORAL_TLS_CA":   "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
}

// nonEmptyEnv is the OS environment with empty variables hidden: envconfig
// takes TEMPORAL_TLS_CLIENT_CERT_PATH= as "TLS on, no certificate", while a
// Kubernetes ConfigMap or env file leaves a setting it does not use empty.
type nonEmptyEnv struct{}

func (nonEmptyEnv) Environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" && v != "" {
			out = append(out, kv)
		}
	}
	return out
}

func (nonEmptyEnv) LookupEnv(k string) (string, bool) {
	v := os.Getenv(k)
	return v, v != ""
}

// loadTemporalProfile loads the envconfig profile (file, then environment)
// and folds in the deprecated variables, returning warnings naming the
// standard variable for each old one in use.
func loadTemporalProfile() (envconfig.ClientConfigProfile, []string, error) {
	p, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{EnvLookup: nonEmptyEnv{}})
	if err != nil {
		err = fmt.Errorf("Temporal client configuration ($TEMPORAL_CONFIG_FILE, $TEMPORAL_PROFILE, $TEMPORAL_*): %w", err)
	}
	var warnings []string
	for _, old := range slices.Sorted(maps.Keys(DeprecatedTemporalEnv)) {
		v := os.Getenv(old)
		if v == "" {
			continue
		}
		std := DeprecatedTemporalEnv[old]
		if os.Getenv(std) != "" {
			warnings = append(warnings, fmt.Sprintf("$%s is deprecated and ignored: $%s is set and wins", old, std))
			continue
		}
		warnings = append(warnings, fmt.Sprintf("$%s is deprecated: set $%s (Temporal's standard name) instead", old, std))
		if p.TLS == nil {
			p.TLS = &envconfig.ClientConfigTLS{}
		}
		switch std {
		case "TEMPORAL_TLS_CLIENT_CERT_PATH":
			p.TLS.ClientCertPath, p.TLS.ClientCertData = v, nil
		case "TEMPORAL_TLS_CLIENT_KEY_PATH":
			p.TLS.ClientKeyPath, p.TLS.ClientKeyData = v, nil
		case "TEMPORAL_TLS_SERVER_CA_CERT_PATH":
			p.TLS.ServerCACertPath, p.TLS.ServerCACertData = v, nil
		}
	}
	return p, warnings, err
}

// Flags registers the Temporal flags, defaulting to Temporal's environment
// configuration (see Temporal). An error loading it is returned by
// ClientOptions and Dial.
func (t *Temporal) Flags(fs *pflag.FlagSet) {
	p, warnings, err := loadTemporalProfile()
	t.profile, t.warnings, t.loadErr, t.fs = &p, warnings, err, fs
	var tc envconfig.ClientConfigTLS
	if p.TLS != nil {
		tc = *p.TLS
	}
	tlsOn := (p.TLS != nil && !p.TLS.Disabled) || (p.TLS == nil && p.APIKey != "")
	fs.StringVar(&t.Address, "temporal-address", cmp.Or(p.Address, "127.0.0.1:7233"), "Temporal frontend host:port ($TEMPORAL_ADDRESS)")
	fs.StringVar(&t.Namespace, "temporal-namespace", cmp.Or(p.Namespace, "default"), "Temporal namespace ($TEMPORAL_NAMESPACE)")
	fs.BoolVar(&t.TLS, "temporal-tls", tlsOn, "connect with TLS; on by default with a certificate, CA, server name or API key ($TEMPORAL_TLS)")
	fs.StringVar(&t.TLSCert, "temporal-tls-cert", tc.ClientCertPath, "client certificate for mTLS ($TEMPORAL_TLS_CLIENT_CERT_PATH)")
	fs.StringVar(&t.TLSKey, "temporal-tls-key", tc.ClientKeyPath, "client key for mTLS ($TEMPORAL_TLS_CLIENT_KEY_PATH)")
	fs.StringVar(&t.TLSCA, "temporal-tls-ca", tc.ServerCACertPath, "CA bundle to verify the server ($TEMPORAL_TLS_SERVER_CA_CERT_PATH)")
	fs.StringVar(&t.TLSServerName, "temporal-tls-server-name", tc.ServerName, "server name to verify ($TEMPORAL_TLS_SERVER_NAME)")
	fs.BoolVar(&t.TLSDisableHostVerification, "temporal-tls-disable-host-verification", tc.DisableHostVerification, "do not verify the server's certificate ($TEMPORAL_TLS_DISABLE_HOST_VERIFICATION)")
	fs.StringVar(&t.APIKey, "temporal-api-key", p.APIKey, "API key, e.g. for Temporal Cloud ($TEMPORAL_API_KEY)")
}

func (t Temporal) changed(flag string) bool { return t.fs != nil && t.fs.Changed(flag) }

// Profile is the envconfig profile the settings amount to: the one Flags
// loaded (inline data, gRPC metadata, authority kept) with the settings'
// values over it.
func (t Temporal) Profile() envconfig.ClientConfigProfile {
	var p envconfig.ClientConfigProfile
	if t.profile != nil {
		p = *t.profile
	}
	p.Address, p.Namespace, p.APIKey = t.Address, t.Namespace, t.APIKey
	var tc envconfig.ClientConfigTLS
	if p.TLS != nil {
		tc = *p.TLS
	}
	// A path that differs from the profile's came from a flag (or a
	// literal): it replaces any inline data of the profile.
	if t.TLSCert != tc.ClientCertPath {
		tc.ClientCertPath, tc.ClientCertData = t.TLSCert, nil
	}
	if t.TLSKey != tc.ClientKeyPath {
		tc.ClientKeyPath, tc.ClientKeyData = t.TLSKey, nil
	}
	if t.TLSCA != tc.ServerCACertPath {
		tc.ServerCACertPath, tc.ServerCACertData = t.TLSCA, nil
	}
	tc.ServerName, tc.DisableHostVerification = t.TLSServerName, t.TLSDisableHostVerification
	implied := t.TLS || tc.ClientCertPath != "" || tc.ClientKeyPath != "" || tc.ServerCACertPath != "" ||
		len(tc.ClientCertData) > 0 || len(tc.ServerCACertData) > 0 || tc.ServerName != "" || tc.DisableHostVerification || t.APIKey != ""
	switch {
	case t.changed("temporal-tls"):
		tc.Disabled = !t.TLS
	case tc.Disabled:
		// TEMPORAL_TLS=false or the profile's tls.disabled stays.
	default:
		tc.Disabled = !implied
	}
	if implied || tc.Disabled || p.TLS != nil {
		p.TLS = &tc
	}
	return p
}

// ClientOptions builds SDK client options from the settings, logging a
// warning for each deprecated variable in use.
func (t Temporal) ClientOptions(logger *slog.Logger) (client.Options, error) {
	warn := slog.Default()
	if logger != nil {
		warn = logger
	}
	for _, w := range t.warnings {
		warn.Warn(w)
	}
	if t.loadErr != nil {
		return client.Options{}, t.loadErr
	}
	p := t.Profile()
	if tc := p.TLS; tc != nil && !tc.Disabled {
		if (tc.ClientCertPath == "") != (tc.ClientKeyPath == "") && len(tc.ClientCertData) == 0 && len(tc.ClientKeyData) == 0 {
			return client.Options{}, fmt.Errorf("--temporal-tls-cert and --temporal-tls-key ($TEMPORAL_TLS_CLIENT_CERT_PATH, $TEMPORAL_TLS_CLIENT_KEY_PATH) must be given together")
		}
		if tc.ClientCertPath != "" && tc.ClientKeyPath != "" {
			if _, err := tls.LoadX509KeyPair(tc.ClientCertPath, tc.ClientKeyPath); err != nil {
				return client.Options{}, fmt.Errorf("--temporal-tls-cert/--temporal-tls-key: %w", err)
			}
		}
		if tc.ServerCACertPath != "" {
			pem, err := os.ReadFile(tc.ServerCACertPath)
			if err != nil {
				return client.Options{}, fmt.Errorf("--temporal-tls-ca: %w", err)
			}
			if !x509.NewCertPool().AppendCertsFromPEM(pem) {
				return client.Options{}, fmt.Errorf("--temporal-tls-ca %s: no PEM certificate in it", tc.ServerCACertPath)
			}
		}
	}
	opts, err := p.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("Temporal client settings: %w", err)
	}
	if opts.ConnectionOptions.TLS != nil && opts.ConnectionOptions.TLS.MinVersion == 0 {
		opts.ConnectionOptions.TLS.MinVersion = tls.VersionTLS12
	}
	if logger != nil {
		opts.Logger = tlog.NewStructuredLogger(logger)
	}
	// Every payload in the operator JSON style (package payload): every
	// client, and every worker built on one, reads and writes the same.
	opts.DataConverter = payload.Converter()
	return opts, nil
}

// Hint says what to change when the frontend cannot be reached: the
// settings, and `make up` only for the local stack's address.
func (t Temporal) Hint() string {
	if t.Address == "127.0.0.1:7233" || t.Address == "localhost:7233" {
		return "is the local stack up? `make up` starts it; for another frontend set --temporal-address / $TEMPORAL_ADDRESS"
	}
	return "set --temporal-address / $TEMPORAL_ADDRESS to a reachable frontend (and --temporal-namespace, --temporal-tls*, --temporal-api-key or a $TEMPORAL_PROFILE as it needs; local stack: `make up`)"
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
		return nil, fmt.Errorf("cannot reach Temporal at %s (namespace %q): %w; %s", t.Address, t.Namespace, err, t.Hint())
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

	// TLS connects over TLS (ClickHouse's tcp_port_secure, 9440 by
	// convention); a CA, client certificate or server name turns it on too.
	TLS           bool
	TLSCA         string // CA bundle to verify the server; empty: system roots
	TLSCert       string // client certificate (with TLSKey)
	TLSKey        string
	TLSServerName string // name to verify; empty: the host of the address

	envErr error // a CLICKHOUSE_TLS that is not true or false
}

// Hint says what to change when the server cannot be reached or used:
// the settings, and `make up` only for the local stack's address.
func (c ClickHouse) Hint() string {
	if c.Addr == DefaultClickHouseAddr && !c.TLSEnabled() {
		return "is the local stack up? `make up` starts it; for another server set --clickhouse-addr / $CLICKHOUSE_ADDR"
	}
	return "set --clickhouse-addr / $CLICKHOUSE_ADDR to a reachable server (and --clickhouse-user, --clickhouse-password, --clickhouse-tls* as it needs; local stack: `make up`)"
}

// TLSEnabled reports whether the settings ask for TLS.
func (c ClickHouse) TLSEnabled() bool {
	return c.TLS || c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" || c.TLSServerName != ""
}

// TLSConfig builds the client's TLS configuration; nil when TLS is off.
// A file that cannot be used gives an error naming its flag.
func (c ClickHouse) TLSConfig() (*tls.Config, error) {
	if c.envErr != nil {
		return nil, c.envErr
	}
	if !c.TLSEnabled() {
		return nil, nil
	}
	tc := &tls.Config{ServerName: c.TLSServerName, MinVersion: tls.VersionTLS12}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, fmt.Errorf("--clickhouse-tls-cert and --clickhouse-tls-key ($CLICKHOUSE_TLS_CERT, $CLICKHOUSE_TLS_KEY) must be given together")
	}
	if c.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--clickhouse-tls-cert/--clickhouse-tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("--clickhouse-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--clickhouse-tls-ca %s: no PEM certificate in it", c.TLSCA)
		}
		tc.RootCAs = pool
	}
	return tc, nil
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
	var env EnvDefaults
	fs.BoolVar(&c.TLS, "clickhouse-tls", env.Bool("CLICKHOUSE_TLS", false), "connect to ClickHouse over TLS (its tcp_port_secure); on too with any --clickhouse-tls-* file or name ($CLICKHOUSE_TLS)")
	c.envErr = env.Err
	fs.StringVar(&c.TLSCA, "clickhouse-tls-ca", Env("CLICKHOUSE_TLS_CA", ""), "CA bundle to verify ClickHouse's certificate; empty: the system roots ($CLICKHOUSE_TLS_CA)")
	fs.StringVar(&c.TLSCert, "clickhouse-tls-cert", Env("CLICKHOUSE_TLS_CERT", ""), "client certificate for ClickHouse, with --clickhouse-tls-key ($CLICKHOUSE_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "clickhouse-tls-key", Env("CLICKHOUSE_TLS_KEY", ""), "client key for ClickHouse ($CLICKHOUSE_TLS_KEY)")
	fs.StringVar(&c.TLSServerName, "clickhouse-tls-server-name", Env("CLICKHOUSE_TLS_SERVER_NAME", ""), "server name to verify ClickHouse's certificate against; empty: the host of --clickhouse-addr ($CLICKHOUSE_TLS_SERVER_NAME)")
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
