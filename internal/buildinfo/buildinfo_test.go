package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFromBuildInfo(t *testing.T) {
	for _, c := range []struct {
		info debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "5bd1d50aa3c2e1f0"}, {Key: "vcs.modified", Value: "true"}}}, "dev-5bd1d50aa3c2+dirty"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	} {
		if got := fromBuildInfo(&c.info); got != c.want {
			t.Errorf("%+v: %q, want %q", c.info.Main, got, c.want)
		}
	}
}

func TestStampedVersionWins(t *testing.T) {
	old := version
	defer func() { version = old }()
	version = "v9.9.9"
	if got := String("worker"); !strings.HasPrefix(got, "worker v9.9.9 ") {
		t.Errorf("String = %q", got)
	}
}
