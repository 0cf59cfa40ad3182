package samples

import (
	"flag"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forewarm/forewarm/appspec"
)

var measureStarts = flag.Int("measure", 0, "TestMeasure: start each sample this many times and report its readiness time, throughput and peak RSS")

// TestMeasure measures the samples as built by build.sh into bin/ (it runs
// it): each one started -measure times in turn, each start sent its shadow
// request once and then, for a second, from as many clients as its
// concurrency. It reports the median readiness time (from the start of the
// process to its first 2xx readiness answer), the median throughput and the
// largest peak RSS, the figures README.md quotes. Only with -measure:
//
//	go test ./samples -run TestMeasure -v -args -measure 5
func TestMeasure(t *testing.T) {
	if *measureStarts <= 0 {
		t.Skip("measures only with -measure N: go test ./samples -run TestMeasure -v -args -measure 5")
	}
	if out, err := exec.Command("bash", "build.sh").CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	set, err := appspec.Load("specs")
	if err != nil {
		t.Fatal(err)
	}
	apps := make([]string, 0, len(set))
	for app := range set {
		apps = append(apps, app)
	}
	slices.Sort(apps)
	var report []string
	for _, app := range apps {
		sp := set[app]
		var ready, first, rate, stop []time.Duration
		var peak int64
		for range *measureStarts {
			in := start(t, sp)
			ready = append(ready, in.ready)
			first = append(first, in.shadowOK(t))
			n := load(t, in, time.Second)
			rate = append(rate, time.Duration(n)) // requests in the second
			peak = max(peak, peakRSS(in.cmd.Process.Pid))
			stop = append(stop, in.stop(t))
		}
		line := strings.Join([]string{
			app,
			"ready median " + median(ready).Round(time.Millisecond).String() +
				" (min " + slices.Min(ready).Round(time.Millisecond).String() +
				", max " + slices.Max(ready).Round(time.Millisecond).String() + ")",
			"first shadow median " + median(first).Round(10*time.Microsecond).String(),
			"shadow requests/s median " + itoa(int64(median(rate))) + " at concurrency " + itoa(int64(sp.Concurrency)),
			"peak RSS " + itoa(peak>>20) + " MiB (memory_mb " + itoa(int64(sp.MemoryMB)) + ")",
			"stop median " + median(stop).Round(time.Millisecond).String(),
		}, "; ")
		t.Log(line)
		report = append(report, line)
	}
	t.Logf("%d starts each:\n%s", *measureStarts, strings.Join(report, "\n"))
}

// load sends the shadow request from sp.Concurrency clients for d and
// returns how many were answered with the expected status.
func load(t *testing.T, in *instance, d time.Duration) int64 {
	var n, bad atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range in.sp.Concurrency {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				req, err := shadowRequest(in.base, in.sp)
				if err != nil {
					bad.Add(1)
					return
				}
				resp, err := in.client.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == in.sp.Shadow.ExpectStatus {
					n.Add(1)
				} else {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%s: %d of %d requests under load failed", in.sp.App, bad.Load(), bad.Load()+n.Load())
	}
	return n.Load()
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
