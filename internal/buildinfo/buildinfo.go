// Package buildinfo says which build a binary is: the version stamped at
// link time (-ldflags "-X github.com/forewarm/forewarm/internal/buildinfo.version=v1.2.3"),
// or else what the Go toolchain recorded (the module version, or the VCS
// revision the binary was built from, "+dirty" when the tree had changes),
// or "dev".
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// version is set by the linker in release builds.
var version string

// Version is the build's version string.
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(info)
}

func fromBuildInfo(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	return "dev-" + rev[:min(12, len(rev))] + dirty
}

// String is the one line a binary's `version` prints: name, version and
// the Go toolchain.
func String(name string) string {
	goVersion := "unknown Go"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
	}
	return strings.Join([]string{name, Version(), goVersion}, " ")
}
