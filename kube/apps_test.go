package kube_test

import (
	"os"
	"path/filepath"
	"regexp"
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

// Lease IDs name the app, a sequence and the host, in any characters:
// each makes one valid pod name, different for different leases.
func TestPodNameIsOnePerLease(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"shop.1796630060.node-a", "shop.1796630060.node-b", "Shop_Checkout.17.ip-10-0-0-1.eu-west-1.compute.internal",
		strings.Repeat("x", 300), "...", "0B5C2D1E-AAAA-4BBB-8CCC-0123456789AB"} {
		n := kube.PodName(id)
		if len(n) > 63 || !regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`).MatchString(n) {
			t.Errorf("PodName(%q) = %q: not a DNS label", id, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%q and %q share the pod name %s", id, other, n)
		}
		if kube.PodName(id) != n {
			t.Errorf("PodName(%q) is not stable", id)
		}
		seen[n] = id
	}
	if got := kube.PodName("shop.1796630060.node-a"); !strings.HasPrefix(got, "warm-shop-1796630060-node-a-") {
		t.Errorf("PodName keeps the readable part: %q", got)
	}
}

func TestAppLabelFitsALabel(t *testing.T) {
	long := strings.Repeat("a1", 40) // an Azure trace's application IDs are 64 hex digits
	if got := kube.AppLabel("shop"); got != "shop" {
		t.Errorf("AppLabel(shop) = %q", got)
	}
	if got := kube.AppLabel(long); len(got) > 63 || got == long || got != kube.AppLabel(long) {
		t.Errorf("AppLabel of an 80-character name = %q", got)
	}
}
