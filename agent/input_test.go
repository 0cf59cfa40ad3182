package agent_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

// call sends a raw request and returns the status and the error body.
func call(t testing.TB, method, url, token, body string) (int, api.ErrorBody) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var eb api.ErrorBody
	_ = json.Unmarshal(data, &eb)
	return resp.StatusCode, eb
}

func getText(t testing.TB, url, token string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

const goodReserve = `{"preparation_id":"p1","app":"app-a","memory_mb":8,"disk_mb":4}`

func TestTokenIsRequiredOnEveryCallButHealth(t *testing.T) {
	ta := startAgent(t, nil)
	calls := []struct{ method, path, body string }{
		{"POST", api.PathLeases, goodReserve},
		{"GET", api.PathLeases, ""},
		{"GET", api.LeasePath("p1"), ""},
		{"DELETE", api.LeasePath("p1"), ""},
		{"POST", api.ShadowPath("p1"), `{"read_ratio":0.5}`},
		{"POST", api.ExtendPath("p1"), `{"ttl_seconds":60}`},
		{"POST", api.PathServe, `{"request_id":"r1","app":"app-a","memory_mb":8}`},
		{"GET", api.PathMetrics, ""},
		{"GET", api.PathPrometheus, ""},
		{"GET", api.PathInfo, ""},
		{"GET", "/no/such/path", ""},
	}
	for _, tok := range []string{"", "wrong", testToken + "x", strings.ToUpper(testToken)} {
		for _, c := range calls {
			status, eb := call(t, c.method, ta.url+c.path, tok, c.body)
			if status != http.StatusUnauthorized || eb.Code != api.CodeUnauthorized {
				t.Errorf("%s %s with token %q: %d %+v, want 401", c.method, c.path, tok, status, eb)
			}
		}
	}
	// A scheme other than Bearer is refused too.
	req, _ := http.NewRequest("GET", ta.url+api.PathInfo, nil)
	req.Header.Set("Authorization", "Basic "+testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("Basic auth: %v %v", resp.StatusCode, err)
	}
	// Nothing was done.
	if l := ta.Leases(); len(l) != 0 {
		t.Errorf("leases after unauthorized calls: %+v", l)
	}
	if files := dataFiles(t, ta.dir); len(files) != 0 {
		t.Errorf("files after unauthorized calls: %v", files)
	}
	for _, p := range []string{api.PathHealth, api.PathReady} {
		if status, _ := call(t, "GET", ta.url+p, "", ""); status != http.StatusOK {
			t.Errorf("GET %s without token: %d, want 200", p, status)
		}
	}
	bad := client.New(ta.url, "wrong-token-of-some-length")
	if _, err := bad.Info(ctxT(t)); !errorsIsUnauthorized(err) {
		t.Errorf("client with a wrong token: %v", err)
	}
}

func errorsIsUnauthorized(err error) bool {
	return client.Code(err) == api.CodeUnauthorized && client.IsPermanent(err)
}

func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	ta := startAgent(t, nil)
	// One live lease, to check that nothing about it changes either.
	if status, _ := call(t, "POST", ta.url+api.PathLeases, testToken, `{"preparation_id":"keep","app":"app-a","memory_mb":8,"disk_mb":4}`); status != http.StatusCreated {
		t.Fatalf("setup reserve: %d", status)
	}
	huge := `{"preparation_id":"p1","app":"app-a","memory_mb":8,"pad":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`
	const bad = api.CodeBadRequest
	// Each refusal names what was wrong: the code, and the field (or the
	// body's fault) in the message.
	cases := []struct {
		name, method, path, body string
		status                   int
		code, says               string
	}{
		{"unknown field", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a","memory_mb":8,"memroy_mb":8}`, 400, bad, `unknown field "memroy_mb"`},
		{"body too large", "POST", api.PathLeases, huge, 413, api.CodeTooLarge, "request body over 65536 bytes"},
		{"empty body", "POST", api.PathLeases, ``, 400, bad, "empty body"},
		{"not JSON", "POST", api.PathLeases, `memory=8`, 400, bad, "invalid character"},
		{"two objects", "POST", api.PathLeases, goodReserve + goodReserve, 400, bad, "unexpected data after the JSON object"},
		{"wrong type", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a","memory_mb":"8"}`, 400, bad, "memory_mb"},
		{"negative memory", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a","memory_mb":-8}`, 400, bad, "memory_mb must be a number ≥ 0"},
		{"negative disk", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a","disk_mb":-1}`, 400, bad, "disk_mb must be a number ≥ 0"},
		{"negative cpu", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a","cpu_milli":-1}`, 400, bad, "cpu_milli -1 is outside"},
		{"absurd memory", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a","memory_mb":1e300}`, 400, bad, "memory_mb 1e+300 is absurd"},
		{"absurd disk", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a","disk_mb":2000000}`, 400, bad, "disk_mb 2e+06 is absurd"},
		{"nothing to reserve", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a"}`, 400, bad, "a lease must reserve something"},
		{"TTL too long", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a","memory_mb":8,"ttl_seconds":1e9}`, 400, bad, "ttl_seconds 1e+09 is outside"},
		{"TTL negative", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app-a","memory_mb":8,"ttl_seconds":-1}`, 400, bad, "ttl_seconds -1 is outside"},
		{"traversal ID", "POST", api.PathLeases, `{"preparation_id":"../../etc/passwd","app":"app-a","memory_mb":8}`, 400, bad, "preparation_id"},
		{"slash ID", "POST", api.PathLeases, `{"preparation_id":"a/b","app":"app-a","memory_mb":8}`, 400, bad, "preparation_id"},
		{"dot ID", "POST", api.PathLeases, `{"preparation_id":"..","app":"app-a","memory_mb":8}`, 400, bad, "preparation_id"},
		{"long ID", "POST", api.PathLeases, `{"preparation_id":"` + strings.Repeat("a", 129) + `","app":"app-a","memory_mb":8}`, 400, bad, "preparation_id"},
		{"empty ID", "POST", api.PathLeases, `{"preparation_id":"","app":"app-a","memory_mb":8}`, 400, bad, "preparation_id is required"},
		{"bad app", "POST", api.PathLeases, `{"preparation_id":"p1","app":"app a","memory_mb":8}`, 400, bad, `app "app a" does not match`},
		{"NUL in ID", "POST", api.PathLeases, `{"preparation_id":"p1\u0000","app":"app-a","memory_mb":8}`, 400, bad, "preparation_id"},
		{"shadow ratio", "POST", api.ShadowPath("keep"), `{"read_ratio":1.5}`, 400, bad, "read_ratio must be within 0..1"},
		{"shadow sample", "POST", api.ShadowPath("keep"), `{"read_ratio":0.5,"sample_mb":100000}`, 400, bad, "sample_mb 100000 is outside"},
		{"shadow unknown field", "POST", api.ShadowPath("keep"), `{"read_ratio":0.5,"x":1}`, 400, bad, `unknown field "x"`},
		{"shadow bad ID", "POST", api.PathLeases + "/ke%2Fep/shadow", `{"read_ratio":0.5}`, 400, bad, "preparation ID"},
		{"release traversal", "DELETE", api.PathLeases + "/..%2F..%2Fetc", ``, 400, bad, "preparation ID"},
		{"release encoded dot", "DELETE", api.PathLeases + "/%2E%2E", ``, 400, bad, "preparation ID"},
		{"extend no TTL", "POST", api.ExtendPath("keep"), `{}`, 400, bad, "ttl_seconds 0 is outside"},
		{"extend TTL too long", "POST", api.ExtendPath("keep"), `{"ttl_seconds":1e9}`, 400, bad, "ttl_seconds 1e+09 is outside"},
		{"extend bad app", "POST", api.ExtendPath("keep"), `{"ttl_seconds":60,"app":"../x"}`, 400, bad, "app"},
		{"extend unknown field", "POST", api.ExtendPath("keep"), `{"ttl":60}`, 400, bad, `unknown field "ttl"`},
		{"extend bad ID", "POST", api.PathLeases + "/%2E%2E/extend", `{"ttl_seconds":60}`, 400, bad, "preparation ID"},
		{"serve no request ID", "POST", api.PathServe, `{"app":"app-a","memory_mb":8}`, 400, bad, "request_id is required"},
		{"serve work", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","memory_mb":8,"work_ms":1e12}`, 400, bad, "work_ms 1e+12 is outside"},
		{"serve ratio", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","memory_mb":8,"read_ratio":-0.1}`, 400, bad, "read_ratio must be within 0..1"},
		{"serve bad lease ID", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","preparation_id":"../keep","memory_mb":8}`, 400, bad, "preparation_id"},
		{"serve request traversal", "POST", api.PathServe, `{"request_id":"../../x","app":"app-a","disk_mb":8}`, 400, bad, "request_id"},
		{"keep without TTL", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","memory_mb":8,"keep_id":"k1"}`, 400, bad, "keep_ttl_seconds is required"},
		{"keep TTL without ID", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","memory_mb":8,"keep_ttl_seconds":60}`, 400, bad, "keep_id is required"},
		{"keep size without ID", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","memory_mb":8,"keep_memory_mb":64}`, 400, bad, "keep_id is required"},
		{"keep bad ID", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","memory_mb":8,"keep_id":"../k","keep_ttl_seconds":60}`, 400, bad, "keep_id"},
		{"keep the served lease", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","preparation_id":"keep","memory_mb":8,"keep_id":"keep","keep_ttl_seconds":60}`, 400, bad, "keep_id keep names the lease"},
		{"keep TTL too long", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","memory_mb":8,"keep_id":"k1","keep_ttl_seconds":1e9}`, 400, bad, "keep_ttl_seconds 1e+09 is outside"},
		{"keep negative size", "POST", api.PathServe, `{"request_id":"r1","app":"app-a","memory_mb":8,"keep_id":"k1","keep_ttl_seconds":60,"keep_memory_mb":-1}`, 400, bad, "keep_memory_mb must be a number ≥ 0"},
		{"wrong method", "PUT", api.PathLeases, goodReserve, 405, "", ""},
	}
	for _, c := range cases {
		status, eb := call(t, c.method, ta.url+c.path, testToken, c.body)
		if status != c.status || eb.Code != c.code || !strings.Contains(eb.Message, c.says) {
			t.Errorf("%s: %d %+v, want %d %s saying %q", c.name, status, eb, c.status, c.code, c.says)
		}
	}
	// State unchanged: the one lease, untouched, and only its file.
	leases := ta.Leases()
	if len(leases) != 1 || leases[0].PreparationID != "keep" || leases[0].State != api.StateReady || leases[0].Shadows != 0 ||
		leases[0].Extensions != 0 || leases[0].RequestsServed != 0 {
		t.Errorf("leases after bad input: %+v", leases)
	}
	files := dataFiles(t, ta.dir)
	if len(files) != 1 || files[0] != "fw-lease-keep.dat" {
		t.Errorf("files after bad input: %v", files)
	}
	if m := ta.Metrics(); m.ReservedMemMB != 8 || m.ReservedDiskMB != 4 || m.ServedCold != 0 || m.LeasesKept != 0 || m.LeasesExtended != 0 {
		t.Errorf("metrics after bad input: %+v", m)
	}
	// Nothing was written outside the data folder either.
	if _, err := os.Stat(filepath.Join(filepath.Dir(ta.dir), "fw-lease-...dat")); err == nil {
		t.Error("a file appeared next to the data folder")
	}
}
