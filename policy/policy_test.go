package policy

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesEveryBadField(t *testing.T) {
	c := Config{Threshold: math.NaN(), ReferenceMB: 0, PrepareSeconds: -1, LookaheadBins: 0, SizePercentile: 2}
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, field := range []string{"threshold NaN", "reference_mb 0", "prepare_seconds -1", "lookahead_bins 0", "size_percentile 2"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %q", err, field)
		}
	}
}

func TestEffectiveThresholds(t *testing.T) {
	c := Default() // threshold 0.05 for 170 MB, preparations cost 2 s
	bin := time.Minute
	ref := c.For(App{MemoryMB: 170}, bin)
	if math.Abs(ref.Keep-0.05) > 1e-12 || math.Abs(ref.Prepare-0.05*62/60) > 1e-12 {
		t.Errorf("reference app: %+v, want keep 0.05, prepare 0.05·62/60", ref)
	}
	// Twice the memory needs twice the chance; a cold start twice as dear,
	// half of it. Unknown memory is the reference's.
	if big := c.For(App{MemoryMB: 340}, bin); math.Abs(big.Keep-0.1) > 1e-12 {
		t.Errorf("340 MB: keep at %v, want 0.1", big.Keep)
	}
	if dear := c.For(App{MemoryMB: 170, ColdWeight: 2}, bin); math.Abs(dear.Keep-0.025) > 1e-12 {
		t.Errorf("cold weight 2: keep at %v, want 0.025", dear.Keep)
	}
	if unknown := c.For(App{}, bin); unknown != ref {
		t.Errorf("unknown memory: %+v, want the reference's %+v", unknown, ref)
	}
	// The cold cost is what makes the reference app break even at the threshold.
	if got := c.ColdCostMBSec(bin); math.Abs(got-170*60/0.05) > 1e-6 {
		t.Errorf("cold cost %v MB·s", got)
	}
}

func TestThresholdZeroHoldsAlways(t *testing.T) {
	c := Default()
	c.Threshold = 0
	th := c.For(App{MemoryMB: 4096}, time.Minute)
	if th.Keep != 0 || th.Prepare != 0 || th.Decide(false, 0) != Prepare || th.Decide(true, 0) != Keep {
		t.Errorf("threshold 0: %+v decides %v and %v, want hold always", th, th.Decide(false, 0), th.Decide(true, 0))
	}
}

func TestDecide(t *testing.T) {
	th := Thresholds{Keep: 0.2, Prepare: 0.3}
	for _, c := range []struct {
		held bool
		p    float64
		want Action
	}{
		{false, 0.1, Idle},
		{false, 0.25, Idle}, // between the two: not worth a fresh preparation
		{false, 0.3, Prepare},
		{true, 0.25, Keep}, // but worth keeping what is held
		{true, 0.2, Keep},
		{true, 0.19, Release},
		{true, math.NaN(), Release},
		{false, math.NaN(), Idle},
	} {
		if got := th.Decide(c.held, c.p); got != c.want {
			t.Errorf("Decide(held %v, p %v) = %v, want %v", c.held, c.p, got, c.want)
		}
	}
	if !Prepare.Holds() || !Keep.Holds() || Release.Holds() || Idle.Holds() {
		t.Error("Holds is wrong")
	}
	if Action(9).String() != "action(9)" || Keep.String() != "keep" {
		t.Errorf("names: %v %v", Action(9), Keep)
	}
}

func TestHoldAndNextChange(t *testing.T) {
	c := Default()
	c.LookaheadBins = 4
	th := Thresholds{Keep: 0.2, Prepare: 0.3}
	path := []float64{0.5, 0.25, 0.22, 0.1, 0.9}
	// Prepared now, kept while >= 0.2: three bins.
	if got := c.Hold(th, false, path); got != 3 {
		t.Errorf("Hold from nothing = %d, want 3", got)
	}
	// Not worth preparing now: no hold.
	if got := c.Hold(th, false, []float64{0.25, 0.9}); got != 0 {
		t.Errorf("Hold below the preparation threshold = %d, want 0", got)
	}
	// Capped by the lookahead and the path.
	if got := c.Hold(th, true, []float64{0.9, 0.9, 0.9, 0.9, 0.9, 0.9}); got != 4 {
		t.Errorf("Hold capped = %d, want 4", got)
	}
	// Next change: held now, kept through 0.25 and 0.22, released at 0.1.
	if got := NextChange(th, true, path[1:]); got != 2 {
		t.Errorf("NextChange while held = %d, want 2", got)
	}
	// Not held: idle through 0.25 and 0.1, prepared at 0.9.
	if got := NextChange(th, false, []float64{0.25, 0.1, 0.9}); got != 2 {
		t.Errorf("NextChange while idle = %d, want 2", got)
	}
	if got := NextChange(th, false, []float64{0.1, 0.1}); got != 2 {
		t.Errorf("NextChange without change = %d, want len(path)", got)
	}
}

func TestLeaseSize(t *testing.T) {
	c := Default()
	sizes := []float64{100, 90, 110, 120, 300, 100, 105, 95, 98, 102, 101, 99, 97, 103, 104, 96, 94, 106, 107, 108}
	// 95th percentile (nearest rank) of 20 sizes: the 19th smallest.
	if got := c.LeaseSizeMB(sizes, 170); got != 120 {
		t.Errorf("lease size %v, want 120", got)
	}
	if got := c.LeaseSizeMB(nil, 170); got != 170 {
		t.Errorf("no sizes: %v, want the fallback 170", got)
	}
	if got := c.LeaseSizeMB([]float64{100, 200}, 170); got != 200 {
		t.Errorf("two sizes: %v, want the largest of them and the fallback (200)", got)
	}
	if got := c.LeaseSizeMB([]float64{math.NaN(), -1, math.Inf(1)}, 64); got != 64 {
		t.Errorf("no usable sizes: %v, want the fallback", got)
	}
}
