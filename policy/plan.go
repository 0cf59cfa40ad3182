package policy

import (
	"fmt"
	"math"
	"time"
)

// Objective names the cold-start figure the operator is judged on, which
// sets what one avoided cold start of an application is worth.
type Objective string

const (
	// PerApplication counts every application's cold-start rate equally,
	// as the 75th percentile (and mean) of per-application rates of
	// Shahrad et al. do: a cold start of an application with few requests
	// moves its rate, and so the figure, more than one of a busy one.
	PerApplication Objective = "per_application"
	// PerRequest counts every request equally (the overall cold rate).
	PerRequest Objective = "per_request"
)

// Objectives lists the objectives, the default first.
var Objectives = []Objective{PerApplication, PerRequest}

func (o Objective) valid() bool { return o == "" || o == PerApplication || o == PerRequest }

// perRequest is true for PerRequest and for the empty objective of loops
// started before the setting existed.
func (o Objective) perRequest() bool { return o == "" || o == PerRequest }

// Activity is what an application's recent history says about it: the
// window of bins the caller reads (the demand model's history), counted.
type Activity struct {
	Window     int     // bins in the window
	Requests   float64 // requests in it
	ActiveBins int     // bins with requests in it
	// Idle is how many bins have passed since the last bin with requests
	// (0: the last bin of the window had some); Window when none did.
	Idle int
}

// ActivityOf counts a window of per-bin request counts, oldest first.
func ActivityOf(counts []float64) Activity {
	a := Activity{Window: len(counts), Idle: len(counts)}
	for b, c := range counts {
		if c > 0 {
			a.Requests += c
			a.ActiveBins++
			a.Idle = len(counts) - 1 - b
		}
	}
	return a
}

// Gaps is how many idle stretches between two bins with requests the
// window holds: the evidence the model's forecast for it rests on.
func (a Activity) Gaps() int { return max(0, a.ActiveBins-1) }

// Trusted says whether the demand model's forecast is used for an
// application with this activity: it is once the window holds TrustGaps
// idle stretches. A threshold of 1 trusts no forecast at all.
func (c Config) Trusted(a Activity) bool {
	return c.Threshold < 1 && a.Gaps() >= c.TrustGaps
}

// floor is how many bins after a bin with requests the application is
// held whatever the forecast: the keep-alive floor, or for an application
// whose forecast is not trusted, at least the fallback keep-alive.
func (c Config) floor(trusted bool) int {
	if trusted {
		return c.KeepAliveBins
	}
	return max(c.KeepAliveBins, c.FallbackBins)
}

// ColdWeight is what one cold start of an application with this activity
// is worth under the objective, relative to the reference application:
// 1 per request; per application, ReferenceRequestsPerDay over its own
// request rate (at least one request in the window), so that every
// application's cold-start rate weighs the same. The rate is read over at
// least a day: a window shorter than that (a new application, or the start
// of a trace) counts its requests as the day's, so a window padded with
// idle bins before the first recorded one reads the same.
func (c Config) ColdWeight(a Activity, bin time.Duration) float64 {
	if c.Objective.perRequest() || a.Window <= 0 || bin <= 0 {
		return 1
	}
	days := max(1, float64(a.Window)*bin.Hours()/24)
	return c.ReferenceRequestsPerDay * days / math.Max(1, a.Requests)
}

// Situation is everything the decision for one application reads as a
// bin begins.
type Situation struct {
	App      App      // its memory (and any cold-start weight of its own)
	Held     bool     // it holds an instance as the bin begins
	Activity Activity // its recent history, up to the bin
	// Path is the demand model's chance of a request in the j-th bin from
	// now, given none before it; Path[0] is this bin's. Without a path
	// (the forecast is not trusted or not asked) every chance reads 0.
	Path []float64
	// Window, when the window slides (WindowBins > 0), is its counts,
	// oldest first: walking the path, each idle bin that enters a full
	// window pushes the oldest of these out.
	Window     []float64
	WindowBins int
}

// Plan is the decision for a bin and what follows from it if no request
// arrives: every caller (the prediction loop, its arrival watch, the
// simulator and the evaluation) acts on this one function's answer.
type Plan struct {
	Action Action
	// HoldBins is how many bins from now the application stays held
	// (0 when the action does not hold; otherwise 1..maxHold).
	HoldBins int
	// NextChange is the first bin from now (1..len(Path)) at which the
	// decision changes what is held; len(Path) when none does.
	NextChange int
	Trusted    bool // whether the forecast was used
}

// After is the situation n bins from now if no request arrives in them:
// the activity n idle bins on, the path from its n-th bin. Held is left
// as it was: the caller says what is held then.
func (s Situation) After(n int) Situation {
	a := s.Activity
	for j := 1; j <= n; j++ {
		a = s.advance(a, j)
	}
	out := s
	out.Activity = a
	out.Path = s.Path[min(n, len(s.Path)):]
	if s.WindowBins > 0 {
		w := append(append([]float64(nil), s.Window...), make([]float64, n)...)
		out.Window = w[max(0, len(w)-s.WindowBins):]
	}
	return out
}

// Decide is the one decision: what to do in this bin, how long a hold
// lasts (at most maxHold bins, at least 1) and when the decision next
// changes, walking the path where no request arrives.
func (c Config) Decide(s Situation, bin time.Duration, maxHold int) Plan {
	n := max(1, len(s.Path))
	a := s.Activity
	act, trusted := c.step(s.App, a, bin, s.Held, s.chance(0))
	plan := Plan{Action: act, Trusted: trusted, NextChange: n}
	held := act.Holds()
	for j := 1; j < n; j++ {
		a = s.advance(a, j)
		next, _ := c.step(s.App, a, bin, held, s.chance(j))
		if next == Prepare || next == Release {
			plan.NextChange = j
			break
		}
		held = next.Holds()
	}
	if act.Holds() {
		plan.HoldBins = max(1, min(plan.NextChange, maxHold))
	}
	return plan
}

func (s Situation) chance(j int) float64 {
	if j < len(s.Path) {
		return s.Path[j]
	}
	return 0
}

// step is the decision in one bin for an application with activity a;
// held is what it holds as the bin begins, p the chance of a request.
func (c Config) step(app App, a Activity, bin time.Duration, held bool, p float64) (Action, bool) {
	trusted := c.Trusted(a)
	floor := a.ActiveBins > 0 && a.Idle < c.floor(trusted)
	switch {
	case floor && held:
		return Keep, trusted
	case floor:
		return Prepare, trusted
	case !trusted && held:
		return Release, trusted
	case !trusted:
		return Idle, trusted
	}
	if !(app.ColdWeight > 0) {
		app.ColdWeight = 1
	}
	app.ColdWeight *= c.ColdWeight(a, bin)
	return c.For(app, bin).Decide(held, p), trusted
}

// advance is the activity j bins from now, none of them with requests: an
// idle bin enters the window, and once the window is full (WindowBins) its
// oldest bin leaves.
func (s Situation) advance(a Activity, j int) Activity {
	if s.WindowBins > 0 && a.Window >= s.WindowBins {
		k := len(s.Window) + j - s.WindowBins - 1 // the bin leaving
		if k >= 0 && k < len(s.Window) && s.Window[k] > 0 {
			a.Requests -= s.Window[k]
			a.ActiveBins--
		}
	} else {
		a.Window++
	}
	a.Idle = min(a.Idle+1, a.Window)
	return a
}

// checkObjective names a bad objective.
func checkObjective(o Objective) error {
	if !o.valid() {
		return fmt.Errorf("objective %q is not one of %q, %q", o, PerApplication, PerRequest)
	}
	return nil
}

// RuleOnly is c deciding by the expected-value rule alone: per request, no
// keep-alive floor, every forecast trusted. Loops started before the
// per-application objective decided so (their recorded settings read the
// same), and tests of the rule itself start from it.
func (c Config) RuleOnly() Config {
	c.Objective, c.ReferenceRequestsPerDay, c.KeepAliveBins, c.FallbackBins, c.TrustGaps = PerRequest, 0, 0, 0, 0
	return c
}
