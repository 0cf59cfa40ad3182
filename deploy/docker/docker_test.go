// Package docker_test lints the Dockerfiles without a container engine:
// their stages, what each COPY takes (an earlier stage, or a file of the
// build context that .dockerignore keeps), a final stage that runs as a
// user without privileges the binary it copied, the ONNX Runtime library
// in the worker image, versions equal to the local scripts' pins, and
// multi-architecture builds: Go cross-compiles on the builder's platform
// for the target's, stamping the version.
package docker_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// root is the build context: the repository.
const root = "../.."

type instruction struct {
	line int
	cmd  string // upper case
	args string
}

type stage struct {
	name     string
	base     string
	platform string // FROM --platform=…; empty: the target's
	line     int
	instrs   []instruction
}

type dockerfile struct {
	path   string
	args   map[string]string // global ARG defaults (before the first FROM)
	stages []stage
}

func parse(t *testing.T, file string) dockerfile {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	df := dockerfile{path: file, args: map[string]string{}}
	sc := bufio.NewScanner(f)
	var buf strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if buf.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if buf.Len() == 0 {
			start = n
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			buf.WriteString(cont + " ")
			continue
		}
		buf.WriteString(line)
		cmd, args, _ := strings.Cut(buf.String(), " ")
		buf.Reset()
		in := instruction{start, strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{line: start}
			if p, ok := strings.CutPrefix(f[0], "--platform="); ok {
				st.platform, f = p, f[1:]
			}
			st.base = f[0]
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				t.Errorf("%s:%d: FROM %q: want IMAGE [AS NAME]", file, start, in.args)
			}
			df.stages = append(df.stages, st)
			continue
		}
		if len(df.stages) == 0 {
			if in.cmd != "ARG" {
				t.Errorf("%s:%d: %s before the first FROM", file, start, in.cmd)
			}
			for _, kv := range strings.Fields(in.args) {
				k, v, _ := strings.Cut(kv, "=")
				df.args[k] = v
			}
			continue
		}
		df.stages[len(df.stages)-1].instrs = append(df.stages[len(df.stages)-1].instrs, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return df
}

// words splits COPY's arguments: flags, then sources and the destination
// (shell form or JSON array form).
func words(args string) (flags map[string]string, paths []string) {
	flags = map[string]string{}
	f := strings.Fields(args)
	for len(f) > 0 && strings.HasPrefix(f[0], "--") {
		k, v, _ := strings.Cut(strings.TrimPrefix(f[0], "--"), "=")
		flags[k] = v
		f = f[1:]
	}
	rest := strings.Join(f, " ")
	if strings.HasPrefix(rest, "[") {
		var arr []string
		if json.Unmarshal([]byte(rest), &arr) == nil {
			return flags, arr
		}
	}
	return flags, f
}

// dockerignored reports whether .dockerignore leaves p out of the context.
func dockerignored(t *testing.T, p string) bool {
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if ok, _ := path.Match(l, p); ok || strings.HasPrefix(p, l+"/") {
			return true
		}
	}
	return false
}

// envPin reads NAME=${NAME:-value} from deploy/local/env.sh.
func envPin(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "local", "env.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(name + `=\$\{` + name + `:-([^}]*)\}`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("deploy/local/env.sh does not pin %s", name)
	}
	return string(m[1])
}

func TestDockerfiles(t *testing.T) {
	files, _ := filepath.Glob("*.Dockerfile")
	if len(files) < 2 {
		t.Fatalf("Dockerfiles: %v", files)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			df := parse(t, file)
			lint(t, t, df)
			if v := df.args["GO_VERSION"]; goVersion == nil || v != string(goVersion[1]) {
				t.Errorf("GO_VERSION %q, go.mod says %s", v, goVersion)
			}
		})
	}
}

// reporter is where lint reports (a *testing.T, or a recorder).
type reporter interface {
	Errorf(format string, args ...any)
}

type recorder struct{ msgs []string }

func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

// lint reports through r; tt reads the files it compares with.
func lint(r reporter, tt *testing.T, df dockerfile) {
	t := r
	if len(df.stages) < 2 {
		t.Errorf("%s: %d stage(s): build in one stage, run in another", df.path, len(df.stages))
	}
	names := map[string]int{}
	for i, st := range df.stages {
		if st.name != "" {
			if _, dup := names[st.name]; dup {
				t.Errorf("%s: stage name %s used twice", df.path, st.name)
			}
			names[st.name] = i
		}
		args := map[string]string{}
		for k, v := range df.args {
			args[k] = v
		}
		for _, in := range st.instrs {
			at := df.path + ":" + itoa(in.line)
			switch in.cmd {
			case "ARG":
				for _, kv := range strings.Fields(in.args) {
					k, v, _ := strings.Cut(kv, "=")
					args[k] = v
				}
			case "COPY", "ADD":
				flags, p := words(expand(in.args, args))
				if len(p) < 2 {
					t.Errorf("%s: %s needs a source and a destination", at, in.cmd)
					continue
				}
				if from, ok := flags["from"]; ok {
					j, known := names[from]
					if !known || j >= i {
						t.Errorf("%s: COPY --from=%s: no earlier stage of that name", at, from)
					}
					continue
				}
				for _, src := range p[:len(p)-1] {
					matches, _ := filepath.Glob(filepath.Join(root, src))
					if len(matches) == 0 {
						t.Errorf("%s: COPY %s: no such file in the build context", at, src)
					}
					if src != "." && dockerignored(tt, path.Clean(src)) {
						t.Errorf("%s: COPY %s: .dockerignore leaves it out of the context", at, src)
					}
				}
			case "RUN":
				if strings.Contains(in.args, "go build") {
					lintGoBuild(t, at, st, in.args)
				}
				for _, m := range regexp.MustCompile(`\./([a-z]+)\b`).FindAllStringSubmatch(in.args, -1) {
					if strings.Contains(in.args, "go build") {
						if _, err := os.Stat(filepath.Join(root, m[1], "main.go")); err != nil {
							t.Errorf("%s: go build ./%s: no main package there", at, m[1])
						}
					}
				}
			}
		}
	}
	final := df.stages[len(df.stages)-1]
	if final.platform != "" {
		t.Errorf("%s:%d: the final stage has --platform=%s: it must be the target's", df.path, final.line, final.platform)
	}
	var user, entry string
	copied := map[string]bool{} // absolute paths the final stage copies in
	env := map[string]string{}
	for _, in := range final.instrs {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			var arr []string
			if err := json.Unmarshal([]byte(in.args), &arr); err != nil || len(arr) == 0 {
				t.Errorf("%s: ENTRYPOINT %s: use the JSON form (signals reach the program)", df.path, in.args)
			} else {
				entry = arr[0]
			}
		case "ENV":
			for _, kv := range strings.Fields(strings.ReplaceAll(in.args, "\\", " ")) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
		case "COPY":
			_, p := words(in.args)
			dest := p[len(p)-1]
			for _, src := range p[:len(p)-1] {
				if strings.HasSuffix(dest, "/") {
					copied[path.Join(dest, path.Base(src))] = true
				} else {
					copied[dest] = true
				}
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("%s: the final stage runs as %q: set USER to a user without privileges", df.path, user)
	}
	if !copied[entry] {
		t.Errorf("%s: ENTRYPOINT %q is not a file the final stage copies in (%v)", df.path, entry, copied)
	}
	if strings.Contains(df.path, "worker") {
		lib := env["ONNXRUNTIME_LIB"]
		if lib == "" || !copied[lib] {
			t.Errorf("%s: ONNXRUNTIME_LIB=%q is not the ONNX Runtime library the final stage copies in", df.path, lib)
		}
		for _, name := range []string{"ORT_VERSION", "ORT_NPM_SHASUM"} {
			var got string
			for _, st := range df.stages {
				for _, in := range st.instrs {
					if k, v, _ := strings.Cut(in.args, "="); in.cmd == "ARG" && k == name {
						got = v
					}
				}
			}
			if want := envPin(tt, name); got != want {
				t.Errorf("%s: %s=%q, deploy/local/env.sh pins %q", df.path, name, got, want)
			}
		}
		if !strings.HasSuffix(lib, envPin(tt, "ORT_VERSION")) {
			t.Errorf("%s: ONNXRUNTIME_LIB %s is not version %s", df.path, lib, envPin(tt, "ORT_VERSION"))
		}
		if !copied["/usr/local/bin/starter"] {
			t.Errorf("%s: the worker image lacks the starter (the migration Job runs it)", df.path)
		}
		// The library of the target's architecture, not always x64's.
		for _, st := range df.stages {
			for _, in := range st.instrs {
				if in.cmd == "RUN" && strings.Contains(in.args, "libonnxruntime") &&
					(strings.Contains(in.args, "linux/x64/") || !strings.Contains(in.args, "TARGETARCH") || !declares(st, "TARGETARCH")) {
					t.Errorf("%s:%d: the ONNX Runtime library must be chosen by ARG TARGETARCH, not fixed to one architecture", df.path, in.line)
				}
			}
		}
	}
}

// declares reports whether st has ARG name.
func declares(st stage, name string) bool {
	return slices.ContainsFunc(st.instrs, func(in instruction) bool {
		if in.cmd != "ARG" {
			return false
		}
		return slices.ContainsFunc(strings.Fields(in.args), func(kv string) bool { k, _, _ := strings.Cut(kv, "="); return k == name })
	})
}

// lintGoBuild: a go build runs on the builder's platform and
// cross-compiles for the target's (GOOS/GOARCH from TARGETOS/TARGETARCH;
// with cgo, a C compiler chosen for the target too), and stamps the
// version from ARG VERSION.
func lintGoBuild(t reporter, at string, st stage, run string) {
	if st.platform != "$BUILDPLATFORM" {
		t.Errorf("%s: go build in a stage without --platform=$BUILDPLATFORM: every target architecture would be emulated", at)
	}
	uses := func(v string) bool { return strings.Contains(run, "${"+v+"}") || strings.Contains(run, "$"+v+" ") }
	if !strings.Contains(run, "GOOS=") || !strings.Contains(run, "GOARCH=") || !uses("TARGETOS") || !uses("TARGETARCH") ||
		!declares(st, "TARGETOS") || !declares(st, "TARGETARCH") {
		t.Errorf("%s: go build must set GOOS=${TARGETOS} GOARCH=${TARGETARCH} (ARG TARGETOS, ARG TARGETARCH in its stage)", at)
	}
	if !strings.Contains(run, "-X github.com/forewarm/forewarm/internal/buildinfo.version=${VERSION}") || !declares(st, "VERSION") {
		t.Errorf("%s: go build must stamp -X github.com/forewarm/forewarm/internal/buildinfo.version=${VERSION} (ARG VERSION in its stage)", at)
	}
	if strings.Contains(run, "CGO_ENABLED=1") && !strings.Contains(run, "CC=") {
		t.Errorf("%s: a cgo build for another architecture needs CC= its cross compiler", at)
	} else if !strings.Contains(run, "CGO_ENABLED=") {
		t.Errorf("%s: say CGO_ENABLED= explicitly (a cross build turns cgo off by default)", at)
	}
}

// The Makefile builds every image for amd64 and arm64 with the version.
func TestMakefileBuildsMultiArch(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	mk := string(b)
	for _, want := range []string{"docker buildx build", "--platform $(IMAGE_PLATFORMS)", "--build-arg VERSION=$(IMAGE_VERSION)",
		"IMAGE_PLATFORMS ?= linux/amd64,linux/arm64", "IMAGE_VERSION ?= $(shell git describe --tags --always)", "IMAGE_REGISTRY ?= ghcr.io/forewarm"} {
		if !strings.Contains(mk, want) {
			t.Errorf("Makefile: the images target lacks %q", want)
		}
	}
	files, _ := filepath.Glob("*.Dockerfile")
	for _, f := range files {
		img := strings.TrimSuffix(f, ".Dockerfile")
		if !regexp.MustCompile(`for i in [^;]*\b` + img + `\b`).MatchString(mk) {
			t.Errorf("Makefile: the images target does not build %s", f)
		}
	}
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func expand(s string, args map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		k := argRef.FindStringSubmatch(m)[1]
		if v, ok := args[k]; ok {
			return v
		}
		return m
	})
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// The linter is not vacuous: a Dockerfile with the usual mistakes is
// refused on each, by line.
func TestLintCatchesMistakes(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.Dockerfile")
	os.WriteFile(bad, []byte(`ARG GO_VERSION=1.26.8
FROM golang:${GO_VERSION} AS build
COPY nothing-here.txt /src/
COPY testdata /src/testdata
RUN go build -o /out/ ./nosuchcmd
FROM --platform=$BUILDPLATFORM debian:bookworm-slim
COPY --from=builder /out/worker /usr/local/bin/
ENTRYPOINT /usr/local/bin/worker
`), 0o644)
	rec := &recorder{}
	lint(rec, t, parse(t, bad))
	for _, want := range []string{
		"bad.Dockerfile:3: COPY nothing-here.txt: no such file",
		"bad.Dockerfile:4: COPY testdata: .dockerignore leaves it out",
		"bad.Dockerfile:5: go build ./nosuchcmd: no main package",
		"bad.Dockerfile:7: COPY --from=builder: no earlier stage",
		"use the JSON form",
		"the final stage runs as \"\"",
		"bad.Dockerfile:5: go build in a stage without --platform=$BUILDPLATFORM",
		"bad.Dockerfile:5: go build must set GOOS=${TARGETOS} GOARCH=${TARGETARCH}",
		"bad.Dockerfile:5: go build must stamp -X github.com/forewarm/forewarm/internal/buildinfo.version=${VERSION}",
		"bad.Dockerfile:5: say CGO_ENABLED= explicitly",
		"bad.Dockerfile:6: the final stage has --platform=$BUILDPLATFORM",
	} {
		if !slices.ContainsFunc(rec.msgs, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("not reported: %q\nreported: %s", want, strings.Join(rec.msgs, "\n"))
		}
	}
}
