package trace

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// SynthOptions tunes Synth. Zero values take the defaults noted.
type SynthOptions struct {
	Apps  int           // number of applications; 0 = 100
	Days  int           // length of the trace; 0 = 1
	Bin   time.Duration // bin width; 0 = 1 minute
	Seed  int64         // same seed and options, same trace
	Start time.Time     // start of bin 0; zero = SynthStart
	Mix   Mix           // shares of the application kinds; zero = DefaultMix
	// TimerJitter is the chance that a timer's firing slips one bin early
	// or late, as real cron-like triggers do; 0 = exact.
	TimerJitter float64
	// Drift is the share of applications (0..1) whose behaviour changes
	// once, as real ones do from week to week: each appears, goes quiet or
	// takes a new rhythm at a time in the middle of the trace; 0 = none.
	// IDs do not mark it: their suffix stays the kind, as documented.
	Drift float64
}

// Mix weighs the synthetic application kinds (normalised to sum 1).
type Mix struct {
	Heavy, Timer, Diurnal, Bursty, Rare, Session float64
}

// DefaultMix is the fleet of Shahrad et al.'s shapes Synth draws by default.
var DefaultMix = Mix{Heavy: 0.03, Timer: 0.27, Diurnal: 0.25, Bursty: 0.25, Rare: 0.20}

// ParseMix reads "timer=0.5,rare=0.3,…" (kinds left out weigh 0).
func ParseMix(s string) (Mix, error) {
	var m Mix
	fields := map[string]*float64{KindHeavy: &m.Heavy, KindTimer: &m.Timer, KindDiurnal: &m.Diurnal, KindBursty: &m.Bursty, KindRare: &m.Rare, KindSession: &m.Session}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		p := fields[strings.TrimSpace(k)]
		if !ok || p == nil {
			return Mix{}, fmt.Errorf("mix %q: each part is kind=weight with kind one of heavy, timer, diurnal, bursty, rare, session", part)
		}
		w, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(w >= 0) || math.IsInf(w, 0) {
			return Mix{}, fmt.Errorf("mix %q: weight %q must be a number >= 0", part, v)
		}
		*p = w
	}
	if m.Heavy+m.Timer+m.Diurnal+m.Bursty+m.Rare+m.Session <= 0 {
		return Mix{}, fmt.Errorf("mix %q: the weights sum to 0", s)
	}
	return m, nil
}

// SynthStart is the default start of a synthetic trace: a Monday, so the
// weekly shape lines up with bin 0.
var SynthStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Synthetic application kinds, the shapes real serverless fleets show
// (Shahrad et al., ATC 2020): the kind is the suffix of each app ID.
const (
	KindTimer   = "timer"   // fixed-period triggers (cron-like), with phase and rare misses
	KindDiurnal = "diurnal" // business-hours traffic in the app's own time zone, quiet weekends
	KindBursty  = "bursty"  // idle, then sessions of intense activity
	KindRare    = "rare"    // a handful of requests a day at random times
	KindHeavy   = "heavy"   // heavy hitters: many requests every minute
	// KindSession is a generative-AI inference app, a shape the Azure 2019
	// trace lacks: a user sends a few requests minutes apart, then nothing
	// for hours.
	KindSession = "session"
)

// Synth generates a deterministic synthetic workload. App i's series
// depends only on the seed, i and the time options, not on the number of
// apps, so a larger fleet extends a smaller one.
func Synth(opt SynthOptions) *Trace {
	if opt.Apps <= 0 {
		opt.Apps = 100
	}
	if opt.Days <= 0 {
		opt.Days = 1
	}
	if opt.Bin <= 0 {
		opt.Bin = time.Minute
	}
	if opt.Start.IsZero() {
		opt.Start = SynthStart
	}
	if opt.Mix == (Mix{}) {
		opt.Mix = DefaultMix
	}
	opt.Start = opt.Start.UTC()
	span := time.Duration(opt.Days) * 24 * time.Hour
	bins := int((span + opt.Bin - 1) / opt.Bin)
	width := max(5, len(fmt.Sprint(opt.Apps-1)))
	t := &Trace{Start: opt.Start, Bin: opt.Bin, Bins: bins, Apps: make([]App, opt.Apps)}
	for i := range t.Apps {
		rng := rand.New(rand.NewPCG(uint64(opt.Seed), uint64(i)))
		g := synthApp{rng: rng, start: opt.Start, bin: opt.Bin, counts: make([]uint32, bins), jitter: opt.TimerJitter}
		kind := g.kind(i, opt.Mix)
		a := &t.Apps[i]
		a.ID = fmt.Sprintf("app-%0*d-%s", width, i, kind)
		a.MemoryMB, a.ReadRatio, a.DurationMS = g.profile(kind)
		g.series(kind)
		if d := planDrift(opt.Seed, i, opt.Drift, bins); d.change != "" {
			d.apply(&g, kind)
		}
		a.Counts = g.counts
	}
	return t
}

// series fills the counts with the kind's shape.
func (g *synthApp) series(kind string) {
	switch kind {
	case KindTimer:
		g.timer()
	case KindDiurnal:
		g.diurnal()
	case KindBursty:
		g.bursty()
	case KindRare:
		g.rare()
	case KindHeavy:
		g.heavy()
	case KindSession:
		g.session()
	}
}

// How a drifting application changes at its change bin.
const (
	driftAppears = "appears" // no requests before the change
	driftQuiet   = "quiet"   // no requests from the change on
	driftRhythm  = "rhythm"  // fresh parameters of the same kind from the change on
)

// driftStream keeps drift's draws apart from the apps' own streams (their
// stream is the app index, far below it), so that Drift 0 leaves every
// trace as it was.
const driftStream = 0xd41f_7000_0000_0000

type driftPlan struct {
	change string // "" when the app does not drift
	at     int    // the bin the new behaviour starts in
	rng    *rand.Rand
}

// planDrift decides whether and how app i drifts. Every draw is made
// whatever the share, so a larger share only adds drifting apps.
func planDrift(seed int64, i int, share float64, bins int) driftPlan {
	r := rand.New(rand.NewPCG(uint64(seed), uint64(i)^driftStream))
	drifts := r.Float64() < share
	change := []string{driftAppears, driftQuiet, driftRhythm}[r.IntN(3)]
	at := int((0.15 + 0.75*r.Float64()) * float64(bins))
	fresh := rand.New(rand.NewPCG(r.Uint64(), r.Uint64()))
	if !drifts {
		return driftPlan{}
	}
	return driftPlan{change: change, at: at, rng: fresh}
}

// apply splices the change into g's counts: a rhythm change generates the
// series again with fresh parameters and keeps it from the change on.
func (d driftPlan) apply(g *synthApp, kind string) {
	switch d.change {
	case driftAppears:
		clear(g.counts[:d.at])
	case driftQuiet:
		clear(g.counts[d.at:])
	case driftRhythm:
		h := *g
		h.rng, h.counts = d.rng, make([]uint32, len(g.counts))
		h.series(kind)
		copy(g.counts[d.at:], h.counts[d.at:])
	}
}

type synthApp struct {
	rng    *rand.Rand
	start  time.Time
	bin    time.Duration
	counts []uint32
	jitter float64
}

// kind picks the shape by the mix's weights; with any heavy hitters in the
// mix, app 7 is one (at least one in any fleet of 10 or more).
func (g *synthApp) kind(i int, m Mix) string {
	u := g.rng.Float64() * (m.Heavy + m.Timer + m.Diurnal + m.Bursty + m.Rare + m.Session)
	switch {
	case (i == 7 && m.Heavy > 0) || u < m.Heavy:
		return KindHeavy
	case u < m.Heavy+m.Timer:
		return KindTimer
	case u < m.Heavy+m.Timer+m.Diurnal:
		return KindDiurnal
	case u < m.Heavy+m.Timer+m.Diurnal+m.Bursty:
		return KindBursty
	case u < m.Heavy+m.Timer+m.Diurnal+m.Bursty+m.Rare || m.Session <= 0: // last, so mixes without sessions draw as before
		return KindRare
	default:
		return KindSession
	}
}

// profile draws memory (log-normal around the Azure median), read ratio
// and work per request, each kind with its own typical values.
func (g *synthApp) profile(kind string) (memMB, readRatio, durMS float64) {
	base := map[string]struct{ mem, read, durMS float64 }{
		KindTimer:   {1, 0.3, 2000}, // batch jobs: write-heavy, long
		KindDiurnal: {1, 0.8, 300},  // web back ends: read-heavy, short
		KindBursty:  {1, 0.6, 500},
		KindRare:    {1, 0.5, 5000},
		KindHeavy:   {1, 0.9, 100},
		KindSession: {6, 0.7, 3000}, // model inference: large, reads weights, seconds per request
	}[kind]
	memMB = math.Round(min(4096, max(32, DefaultMemoryMB*base.mem*math.Exp(0.6*g.rng.NormFloat64()))))
	readRatio = math.Round(min(0.98, max(0.02, base.read+0.12*g.rng.NormFloat64()))*100) / 100
	durMS = math.Round(base.durMS * math.Exp(0.8*g.rng.NormFloat64()))
	return memMB, readRatio, max(1, durMS)
}

func (g *synthApp) add(b int, n uint64) {
	if b >= 0 && b < len(g.counts) {
		g.counts[b] = uint32(min(uint64(g.counts[b])+n, math.MaxUint32))
	}
}

// perBin turns a rate per minute into an expected count per bin.
func (g *synthApp) perBin(perMinute float64) float64 { return perMinute * g.bin.Minutes() }

func (g *synthApp) at(b int) time.Time { return g.start.Add(time.Duration(b) * g.bin) }

// timer fires every period from a random phase; 1% of firings are missed.
func (g *synthApp) timer() {
	periods := []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}
	period := periods[g.rng.IntN(len(periods))]
	burst := uint64(1 + g.rng.IntN(3))
	span := time.Duration(len(g.counts)) * g.bin
	for at := time.Duration(g.rng.Int64N(int64(period))); at < span; at += period {
		if g.rng.Float64() < 0.01 {
			continue
		}
		b := int(at / g.bin)
		if g.jitter > 0 && g.rng.Float64() < g.jitter {
			b += 2*g.rng.IntN(2) - 1
		}
		g.add(b, burst)
	}
}

// businessHours is the share of peak traffic at a local hour of the day
// and weekday: full 9–17, ramps either side, a trickle at night and on
// weekends.
func businessHours(local time.Time) float64 {
	h := float64(local.Hour()) + float64(local.Minute())/60
	var f float64
	switch {
	case h >= 9 && h < 17:
		f = 1
	case h >= 7 && h < 9:
		f = 0.05 + 0.95*(h-7)/2
	case h >= 17 && h < 20:
		f = 1 - 0.95*(h-17)/3
	default:
		f = 0.05
	}
	if wd := local.Weekday(); wd == time.Saturday || wd == time.Sunday {
		f *= 0.15
	}
	return f
}

// zones are the hours from UTC an app's users may live at.
var zones = []int{-8, -5, 0, 1, 8}

func (g *synthApp) diurnal() {
	zone := time.FixedZone("", zones[g.rng.IntN(len(zones))]*3600)
	peak := math.Exp(math.Log(0.2) + g.rng.Float64()*math.Log(100)) // 0.2..20 per minute
	for b := range g.counts {
		g.add(b, g.poisson(g.perBin(peak*businessHours(g.at(b).In(zone)))))
	}
}

// bursty alternates idle stretches with sessions: sessions start at 0.1–3
// per hour, last 10 minutes on average and carry 1–20 requests a minute.
func (g *synthApp) bursty() {
	startsPerHour := 0.1 + g.rng.Float64()*2.9
	meanSession := time.Duration((5 + g.rng.Float64()*15) * float64(time.Minute))
	inSession := 1 + g.rng.Float64()*19
	pStart := 1 - math.Exp(-startsPerHour*g.bin.Hours())
	var until time.Time
	for b := range g.counts {
		t := g.at(b)
		if !t.Before(until) && g.rng.Float64() < pStart {
			until = t.Add(time.Duration(g.rng.ExpFloat64() * float64(meanSession)))
		}
		if t.Before(until) {
			g.add(b, g.poisson(g.perBin(inSession)))
		}
	}
}

// rare places a few requests (0.3–5 a day, at least one) uniformly.
func (g *synthApp) rare() {
	days := float64(len(g.counts)) * g.bin.Hours() / 24
	n := max(1, g.poisson((0.3+g.rng.Float64()*4.7)*days))
	for range n {
		g.add(g.rng.IntN(len(g.counts)), 1)
	}
}

// heavy carries 20–200 requests a minute with a mild daily swing.
func (g *synthApp) heavy() {
	rate := 20 + g.rng.Float64()*180
	phase := g.rng.Float64() * 2 * math.Pi
	for b := range g.counts {
		day := 2 * math.Pi * float64(g.at(b).Sub(g.start)) / float64(24*time.Hour)
		g.add(b, g.poisson(g.perBin(rate*(0.8+0.2*math.Sin(day+phase)))))
	}
}

// session starts sessions at 0.03–1 an hour (log-uniform) at the peak of
// business hours in the app's time zone, the rate varying from day to day
// (log-normal, sigma 0.5, mean 1). A session is a geometric number of
// requests (mean 2–6, at least one) with exponential gaps (mean 1–8
// minutes). At least one session in the trace: real traces list only apps
// that were used.
func (g *synthApp) session() {
	zone := time.FixedZone("", zones[g.rng.IntN(len(zones))]*3600)
	perHour := math.Exp(math.Log(0.03) + g.rng.Float64()*math.Log(1/0.03))
	stop := 1 / (2 + 4*g.rng.Float64()) // geometric: the chance a request is the session's last
	meanGap := (1 + 7*g.rng.Float64()) * float64(time.Minute)
	run := func(from time.Duration) {
		for at := from; ; at += time.Duration(g.rng.ExpFloat64() * meanGap) {
			g.add(int(at/g.bin), 1)
			if g.rng.Float64() < stop {
				return
			}
		}
	}
	started, day, factor := false, -1, 1.0
	for b := range g.counts {
		local := g.at(b).In(zone)
		if y, m, d := local.Date(); y*10000+int(m)*100+d != day {
			day, factor = y*10000+int(m)*100+d, math.Exp(0.5*g.rng.NormFloat64()-0.125)
		}
		for range g.poisson(perHour * factor * businessHours(local) * g.bin.Hours()) {
			run(time.Duration(b)*g.bin + time.Duration(g.rng.Int64N(int64(g.bin))))
			started = true
		}
	}
	if !started {
		run(time.Duration(g.rng.Int64N(int64(len(g.counts)) * int64(g.bin))))
	}
}

// poisson draws a Poisson count: exact by inversion for small means, a
// rounded normal approximation above 30 (indistinguishable there).
func (g *synthApp) poisson(mean float64) uint64 {
	if mean <= 0 {
		return 0
	}
	if mean > 30 {
		return uint64(max(0, math.Round(mean+math.Sqrt(mean)*g.rng.NormFloat64())))
	}
	limit, p, n := math.Exp(-mean), g.rng.Float64(), uint64(0)
	for p > limit {
		p *= g.rng.Float64()
		n++
	}
	return n
}
