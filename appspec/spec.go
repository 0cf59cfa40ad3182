// Package appspec describes an application once, the way a host agent
// starts it as a warm instance: its command, environment, port, readiness
// check, shadow request, limits, scratch storage and how many requests one
// instance takes at once.
//
// Specs live in an operator-managed folder, one file per application,
// <folder>/<app>.json; an agent loads them from there and never from the
// network. A caller names an application and the spec version it expects,
// and an agent that holds another version (or none) refuses. Every field
// is checked when the folder is loaded; an error names the file and field.
//
//	{
//	  "app": "sample-go",
//	  "version": "1",
//	  "command": ["./sample-go", "--model", "model.bin"],
//	  "env": {"GOMAXPROCS": "1"},
//	  "readiness": {"path": "/healthz", "timeout": "30s"},
//	  "shadow": {"method": "POST", "path": "/predict", "body": "{\"x\":1}", "expect_status": 200, "max_latency": "500ms"},
//	  "memory_mb": 128, "cpu_milli": 500, "scratch_mb": 16, "concurrency": 4
//	}
//
// A relative command path (one with a slash) and Dir are read from the
// spec's folder. The instance is given its port in $PORT (PortEnv), its
// scratch folder in $FOREWARM_SCRATCH, and listens on 127.0.0.1 only.
package appspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Spec is one application as a host agent runs it.
type Spec struct {
	App     string `json:"app"`
	Version string `json:"version"`
	// Command is the program and its arguments. A program with a slash is
	// a path (relative ones from the spec's folder); one without is looked
	// up in PATH.
	Command []string          `json:"command"`
	Env     map[string]string `json:"env,omitempty"`
	// Dir is the working folder (relative ones from the spec's folder);
	// empty: the spec's folder.
	Dir string `json:"dir,omitempty"`
	// PortEnv names the variable that carries the port (default PORT).
	PortEnv   string    `json:"port_env,omitempty"`
	Readiness Readiness `json:"readiness"`
	Shadow    Shadow    `json:"shadow"`
	// MemoryMB is the instance's memory limit (its cgroup's), CPUMilli its
	// CPU limit in millicores, ScratchMB the storage pre-allocated for it.
	MemoryMB  float64 `json:"memory_mb"`
	CPUMilli  int64   `json:"cpu_milli"`
	ScratchMB float64 `json:"scratch_mb,omitempty"`
	// Concurrency is how many requests one instance takes at once.
	Concurrency int `json:"concurrency"`
	// StopGrace is how long a stopped instance has between SIGTERM and
	// SIGKILL (default 5s).
	StopGrace Duration `json:"stop_grace,omitzero"`

	// Folder is where the spec was read from (not part of the file).
	Folder string `json:"-"`
}

// Readiness is how an agent knows an instance has started: an HTTP GET of
// Path that answers 2xx, tried every Interval until Timeout.
type Readiness struct {
	Path     string   `json:"path"`
	Timeout  Duration `json:"timeout,omitzero"`  // default 60s
	Interval Duration `json:"interval,omitzero"` // default 20ms
}

// Shadow is the small request that proves a started instance serves: it
// must answer ExpectStatus within MaxLatency.
type Shadow struct {
	Method       string   `json:"method"`
	Path         string   `json:"path"`
	Body         string   `json:"body,omitempty"`
	ContentType  string   `json:"content_type,omitempty"`
	ExpectStatus int      `json:"expect_status"`
	MaxLatency   Duration `json:"max_latency"`
}

// Defaults applied by Load.
const (
	DefaultPortEnv          = "PORT"
	DefaultReadinessTimeout = 60 * time.Second
	DefaultReadinessEvery   = 20 * time.Millisecond
	DefaultStopGrace        = 5 * time.Second
	// MaxConcurrency bounds Concurrency.
	MaxConcurrency = 10_000
)

// Duration is a time.Duration written as a string ("500ms", "1m0s").
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"500ms\" or \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

var (
	appPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	envPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// reservedEnv are the variables the agent sets itself.
var reservedEnv = []string{"FOREWARM_SCRATCH", "FOREWARM_APP", "FOREWARM_INSTANCE"}

// Validate checks every field and fills the defaults; the error names each
// field that is wrong.
func (s *Spec) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !appPattern.MatchString(s.App) {
		bad("app", "%q must match %s", s.App, appPattern)
	}
	if !appPattern.MatchString(s.Version) {
		bad("version", "%q must match %s (e.g. \"1\" or \"2026-12-07\")", s.Version, appPattern)
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		bad("command", "is required: the program and its arguments")
	}
	if s.PortEnv == "" {
		s.PortEnv = DefaultPortEnv
	}
	if !envPattern.MatchString(s.PortEnv) || slices.Contains(reservedEnv, s.PortEnv) {
		bad("port_env", "%q is not a variable name the agent may set", s.PortEnv)
	}
	for _, k := range sortedKeys(s.Env) {
		switch {
		case !envPattern.MatchString(k):
			bad("env."+k, "is not a variable name")
		case k == s.PortEnv || slices.Contains(reservedEnv, k):
			bad("env."+k, "is set by the agent")
		case strings.ContainsRune(s.Env[k], 0):
			bad("env."+k, "contains a NUL byte")
		}
	}
	if !strings.HasPrefix(s.Readiness.Path, "/") {
		bad("readiness.path", "%q must start with /", s.Readiness.Path)
	}
	if s.Readiness.Timeout == 0 {
		s.Readiness.Timeout = Duration(DefaultReadinessTimeout)
	}
	if s.Readiness.Interval == 0 {
		s.Readiness.Interval = Duration(DefaultReadinessEvery)
	}
	if s.Readiness.Timeout < 0 || s.Readiness.Interval < 0 || s.Readiness.Interval > s.Readiness.Timeout {
		bad("readiness", "timeout %s and interval %s must be > 0, the interval the shorter", s.Readiness.Timeout.D(), s.Readiness.Interval.D())
	}
	if err := s.Shadow.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !(s.MemoryMB >= 4 && s.MemoryMB <= 1<<20) {
		bad("memory_mb", "%g is outside 4..%d", s.MemoryMB, 1<<20)
	}
	if s.CPUMilli < 10 || s.CPUMilli > 1<<20 {
		bad("cpu_milli", "%d is outside 10..%d", s.CPUMilli, 1<<20)
	}
	if !(s.ScratchMB >= 0 && s.ScratchMB <= 1<<20) {
		bad("scratch_mb", "%g is outside 0..%d", s.ScratchMB, 1<<20)
	}
	if s.Concurrency < 1 || s.Concurrency > MaxConcurrency {
		bad("concurrency", "%d is outside 1..%d", s.Concurrency, MaxConcurrency)
	}
	if s.StopGrace == 0 {
		s.StopGrace = Duration(DefaultStopGrace)
	}
	if s.StopGrace < 0 || s.StopGrace.D() > time.Minute {
		bad("stop_grace", "%s is outside 0..1m", s.StopGrace.D())
	}
	return errors.Join(errs...)
}

// Validate checks the shadow request and fills its defaults; each error
// names its field (shadow.path).
func (s *Shadow) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if s.Method == "" {
		s.Method = http.MethodGet
	}
	if !slices.Contains([]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodHead}, s.Method) {
		bad("shadow.method", "%q is not one of GET, POST, PUT, HEAD", s.Method)
	}
	if !strings.HasPrefix(s.Path, "/") {
		bad("shadow.path", "%q must start with /", s.Path)
	}
	if s.ExpectStatus == 0 {
		s.ExpectStatus = http.StatusOK
	}
	if s.ExpectStatus < 100 || s.ExpectStatus > 599 {
		bad("shadow.expect_status", "%d is not an HTTP status", s.ExpectStatus)
	}
	if s.MaxLatency <= 0 {
		bad("shadow.max_latency", "is required (> 0): the bound a ready instance answers the shadow request within")
	}
	if len(s.Body) > 64<<10 {
		bad("shadow.body", "is %d bytes; a shadow request is small (at most 64 KiB)", len(s.Body))
	}
	return errors.Join(errs...)
}

// Program is the path of the program to run.
func (s *Spec) Program() string {
	p := s.Command[0]
	if strings.Contains(p, "/") && !filepath.IsAbs(p) {
		return filepath.Join(s.Folder, p)
	}
	return p
}

// WorkDir is the instance's working folder.
func (s *Spec) WorkDir() string {
	switch {
	case s.Dir == "":
		return s.Folder
	case filepath.IsAbs(s.Dir):
		return s.Dir
	}
	return filepath.Join(s.Folder, s.Dir)
}

// Parse reads one spec from data (named name in errors): strictly, one
// JSON object with no unknown field, then Validate.
func Parse(name string, data []byte) (*Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", name, explain(data, err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: more than one JSON value", name)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &s, nil
}

// explain adds the line of a JSON syntax or type error.
func explain(data []byte, err error) error {
	var off int64
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
		if te.Field != "" {
			return fmt.Errorf("line %d: field %s: %w", lineAt(data, off), te.Field, err)
		}
	default:
		return err
	}
	return fmt.Errorf("line %d: %w", lineAt(data, off), err)
}

func lineAt(data []byte, off int64) int {
	return bytes.Count(data[:min(int(off), len(data))], []byte("\n")) + 1
}

// Set is the specs of one folder, by application.
type Set map[string]*Spec

// Load reads every <app>.json in dir. A file whose name is not its app, two
// files of one app or any invalid file fail the whole load, naming the
// files: an agent never runs half of what an operator wrote.
func Load(dir string) (Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("application specs: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	set := Set{}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(abs, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := Parse(path, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if want := strings.TrimSuffix(e.Name(), ".json"); s.App != want {
			errs = append(errs, fmt.Errorf("%s: app %q must be the file's name (%s.json)", path, s.App, s.App))
			continue
		}
		s.Folder = abs
		set[s.App] = s
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return set, nil
}

// Lookup finds app's spec at version (empty: any version), with an error
// that says what the folder holds instead.
func (s Set) Lookup(app, version string) (*Spec, error) {
	sp, ok := s[app]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: no spec of application %s here", ErrUnknown, app)
	case version != "" && version != sp.Version:
		return nil, fmt.Errorf("%w: application %s is at spec version %s here, not %s", ErrUnknown, app, sp.Version, version)
	}
	return sp, nil
}

// ErrUnknown is the error of a spec the folder does not hold.
var ErrUnknown = errors.New("unknown application spec")

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
