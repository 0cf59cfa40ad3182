package trace

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// traceHash digests everything Synth produces: IDs, profiles and counts.
func traceHash(tr *Trace) string {
	h := sha256.New()
	fmt.Fprintf(h, "%v %v %d\n", tr.Start, tr.Bin, tr.Bins)
	var b [8]byte
	for _, a := range tr.Apps {
		fmt.Fprintf(h, "%s\n", a.ID)
		for _, f := range []float64{a.MemoryMB, a.ReadRatio, a.DurationMS} {
			binary.LittleEndian.PutUint64(b[:], math.Float64bits(f))
			h.Write(b[:])
		}
		for _, c := range a.Counts {
			binary.LittleEndian.PutUint32(b[:4], c)
			h.Write(b[:4])
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestSynthUnchanged pins fleets without sessions or drift to the traces
// Synth made before either existed (hashes taken on that code): the
// committed results and other packages' tests depend on them.
func TestSynthUnchanged(t *testing.T) {
	for _, c := range []struct {
		opt   SynthOptions
		hash  string
		total uint64
	}{
		{SynthOptions{Apps: 50, Days: 2, Seed: 1},
			"3147137c847af8a19dba9671d6eaf85267de7b21aee253e469d5b5494446a6ec", 757684},
		{SynthOptions{Apps: 50, Days: 2, Seed: 2, Mix: Mix{Timer: 0.5, Bursty: 0.2, Rare: 0.2, Diurnal: 0.08, Heavy: 0.02}, TimerJitter: 0.2},
			"3d9972352b6ae58d0e3c7235b0a219258563bd8e7b6655715c4da54883ededf1", 499689},
	} {
		tr := Synth(c.opt)
		if got := traceHash(tr); got != c.hash || tr.Total() != c.total {
			t.Errorf("%+v: hash %s, %d requests; want %s, %d", c.opt, got, tr.Total(), c.hash, c.total)
		}
	}
}

func TestParseMix(t *testing.T) {
	m, err := ParseMix("session=0.6, timer=0.4")
	if err != nil || m != (Mix{Session: 0.6, Timer: 0.4}) {
		t.Errorf("ParseMix = %+v, %v", m, err)
	}
	for _, bad := range []string{"sessions=1", "session=-1", "session=0"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
	if _, err := ParseMix("x=1"); err == nil || !strings.Contains(err.Error(), "rare, session") {
		t.Errorf("error does not list session: %v", err)
	}
}

// activeGaps returns the bins with requests and the gaps between them.
func activeGaps(counts []uint32) (active int, gaps []int) {
	last := -1
	for b, c := range counts {
		if c == 0 {
			continue
		}
		active++
		if last >= 0 {
			gaps = append(gaps, b-last)
		}
		last = b
	}
	return active, gaps
}

// TestSynthSessions checks session apps are sparse and bunched: a few
// minutes a day, most gaps short, and hours between sessions.
func TestSynthSessions(t *testing.T) {
	opt := SynthOptions{Apps: 60, Days: 3, Seed: 9, Mix: Mix{Session: 1}}
	tr := Synth(opt)
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tr, Synth(opt)) {
		t.Fatal("same options, different traces")
	}
	var activePerDay []float64
	var short, long, all int
	shared := false
	for _, a := range tr.Apps {
		if !strings.HasSuffix(a.ID, "-"+KindSession) {
			t.Fatalf("%s in a sessions-only mix", a.ID)
		}
		if a.MemoryMB < 32 || a.DurationMS < 1 || a.ReadRatio <= 0 || a.ReadRatio >= 1 {
			t.Errorf("%s profile %v MB, read %v, %v ms", a.ID, a.MemoryMB, a.ReadRatio, a.DurationMS)
		}
		active, gaps := activeGaps(a.Counts)
		if active == 0 {
			t.Errorf("%s: no request", a.ID)
		}
		if active > 3*200 {
			t.Errorf("%s: active in %d minutes of 3 days", a.ID, active)
		}
		activePerDay = append(activePerDay, float64(active)/3)
		for _, g := range gaps {
			all++
			if g < 10 {
				short++
			}
			if g >= 120 {
				long++
			}
		}
		shared = shared || slices.Max(a.Counts) > 1
	}
	slices.Sort(activePerDay)
	if m := activePerDay[len(activePerDay)/2]; m > 30 {
		t.Errorf("median session app active %v minutes a day", m)
	}
	// Gaps between active minutes: within sessions (most) and between them.
	if short*10 < all*6 || long*20 < all {
		t.Errorf("of %d gaps %d are under 10 minutes, %d 2 hours or more", all, short, long)
	}
	if !shared {
		t.Error("no two requests of a session ever share a minute")
	}
	// Most apps rest for hours between sessions (the busiest have some at
	// night too: the rate is never zero).
	rested, withGaps := 0, 0
	for _, a := range tr.Apps {
		if _, gaps := activeGaps(a.Counts); len(gaps) > 0 {
			withGaps++
			if slices.Max(gaps) >= 6*60 {
				rested++
			}
		}
	}
	if rested*4 < withGaps*3 {
		t.Errorf("%d of %d apps idle for 6 hours at some point", rested, withGaps)
	}
}

func TestSynthDrift(t *testing.T) {
	// A larger share only adds drifting apps, and the share holds.
	drifting := 0
	for i := range 4000 {
		p, q := planDrift(1, i, 0.3, 1000), planDrift(1, i, 0.6, 1000)
		if p.change != "" {
			drifting++
			if p.change != q.change || p.at != q.at {
				t.Fatalf("app %d: plan %+v at 0.3, %+v at 0.6", i, p, q)
			}
		}
		if p.change != "" && (p.at < 150 || p.at >= 900) {
			t.Errorf("app %d changes at bin %d of 1000", i, p.at)
		}
	}
	if share := float64(drifting) / 4000; math.Abs(share-0.3) > 0.03 {
		t.Errorf("%.3f of apps drift, want about 0.3", share)
	}
	if planDrift(1, 0, 0, 1000).change != "" || planDrift(1, 0, 1, 1000).change == "" {
		t.Error("drift 0 or 1")
	}

	mix := DefaultMix
	mix.Session = 0.3
	base := SynthOptions{Apps: 90, Days: 2, Seed: 5, Mix: mix}
	opt := base
	opt.Drift = 1
	plain, tr := Synth(base), Synth(opt)
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tr, Synth(opt)) {
		t.Fatal("same options, different traces")
	}
	small := opt
	small.Apps = 20
	if !reflect.DeepEqual(Synth(small).Apps, tr.Apps[:20]) {
		t.Error("a drifting app depends on the fleet size")
	}
	changes := map[string]int{}
	for i, a := range tr.Apps {
		p := planDrift(opt.Seed, i, opt.Drift, tr.Bins)
		changes[p.change]++
		was := plain.Apps[i]
		if a.ID != was.ID || a.MemoryMB != was.MemoryMB || a.ReadRatio != was.ReadRatio || a.DurationMS != was.DurationMS {
			t.Errorf("app %d: drift changed the profile: %+v", i, a)
		}
		before, after := a.Counts[:p.at], a.Counts[p.at:]
		zero := func(c []uint32) bool { return !slices.ContainsFunc(c, func(n uint32) bool { return n > 0 }) }
		switch p.change {
		case driftAppears:
			if !zero(before) || !slices.Equal(after, was.Counts[p.at:]) {
				t.Errorf("%s appears at bin %d but has requests before it", a.ID, p.at)
			}
		case driftQuiet:
			if !zero(after) || !slices.Equal(before, was.Counts[:p.at]) {
				t.Errorf("%s goes quiet at bin %d but has requests after it", a.ID, p.at)
			}
		case driftRhythm:
			if !slices.Equal(before, was.Counts[:p.at]) {
				t.Errorf("%s: a new rhythm at bin %d changed the bins before it", a.ID, p.at)
			}
			if slices.Equal(after, was.Counts[p.at:]) && !zero(after) {
				t.Errorf("%s: no new rhythm after bin %d", a.ID, p.at)
			}
		default:
			t.Errorf("%s: drift 1 and no change", a.ID)
		}
	}
	if changes[driftAppears] < 20 || changes[driftQuiet] < 20 || changes[driftRhythm] < 20 {
		t.Errorf("changes %v among 90 apps", changes)
	}
}
