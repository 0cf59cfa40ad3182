package kube_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/kube"
)

func TestLoadAppsNamesFileAndField(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "apps.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := `{"apps":[{"app":"shop","namespace":"apps","deployment":"shop","port":8080,"shadow":{"path":"/healthz","max_latency":"500ms"}}]}`
	apps, err := kube.LoadApps(write(ok))
	if err != nil {
		t.Fatal(err)
	}
	if a := apps["shop"]; a.Shadow.Method != "GET" || a.Shadow.ExpectStatus != 200 || a.Ready.D() != kube.DefaultReadyTimeout {
		t.Errorf("defaults not filled: %+v", a)
	}
	for _, c := range []struct{ body, want string }{
		{`{"apps":[]}`, "apps: no application"},
		{`{"apps":[{"app":"shop","namespace":"apps","deployment":"shop","port":0,"shadow":{"path":"/","max_latency":"1s"}}]}`, "apps[0]: port: 0 is not a port"},
		{`{"apps":[{"app":"shop","namespace":"apps","deployment":"shop","pod_template":"t","port":80,"shadow":{"path":"/","max_latency":"1s"}}]}`, "exactly one of deployment"},
		{`{"apps":[{"app":"shop","namespace":"Apps!","deployment":"shop","port":80,"shadow":{"path":"/","max_latency":"1s"}}]}`, "namespace:"},
		{`{"apps":[{"app":"shop","namespace":"apps","deployment":"shop","port":80,"shadow":{"path":"x","max_latency":"1s"}}]}`, "shadow.path"},
		{`{"apps":[{"app":"shop","namespace":"apps","knative_service":"shop","shadow":{"path":"/"}}]}`, "shadow.max_latency"},
		{`{"apps":[{"app":"shop","namespace":"apps","deployment":"shop","port":80,"shadow":{"path":"/","max_latency":"1s"}},{"app":"shop","namespace":"b","deployment":"s","port":80,"shadow":{"path":"/","max_latency":"1s"}}]}`, "apps[1].app: \"shop\" is listed twice"},
		{`{"apps":[{"app":"shop","nmespace":"apps"}]}`, "unknown field \"nmespace\""},
	} {
		_, err := kube.LoadApps(write(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "apps.json") {
			t.Errorf("%s: error %v, want the file and %q", c.body, err, c.want)
		}
	}
}

func TestPodNameIsOnePerLease(t *testing.T) {
	if got := kube.PodName("0B5C2D1E-AAAA-4BBB-8CCC-0123456789AB"); got != "warm-0b5c2d1e-aaaa-4bbb-8ccc-0123456789ab" {
		t.Errorf("PodName = %q", got)
	}
}
