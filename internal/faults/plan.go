package faults

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Fault is one kind of fault a plan places: Kind names it (the soak knows
// kill-worker, kill-agent and cut-clickhouse), Target what it hits, and
// Lasts how long until what broke is back (a restart, a restored link).
type Fault struct {
	Kind   string
	Target string
	Lasts  time.Duration
}

// Event is a fault at a time into the run.
type Event struct {
	Fault
	At time.Duration
}

func (e Event) String() string {
	s := fmt.Sprintf("%s at %v", e.Kind, e.At.Round(100*time.Millisecond))
	if e.Target != "" {
		s = fmt.Sprintf("%s %s at %v", e.Kind, e.Target, e.At.Round(100*time.Millisecond))
	}
	return s + fmt.Sprintf(" for %v", e.Lasts.Round(100*time.Millisecond))
}

// Plan is the faults of a run, in time order.
type Plan []Event

func (p Plan) String() string {
	parts := make([]string, len(p))
	for i, e := range p {
		parts[i] = e.String()
	}
	return strings.Join(parts, "; ")
}

// NewPlan places the faults at random times within [start, end), from
// seed: the same seed gives the same plan. The window is split into one
// slot per fault (in a random order), and each fault begins at a random
// time in its slot such that it is over, plus settle, before the slot
// ends: faults never overlap, and each has settled before the next.
func NewPlan(seed uint64, start, end, settle time.Duration, faults []Fault) (Plan, error) {
	if len(faults) == 0 {
		return nil, nil
	}
	slot := (end - start) / time.Duration(len(faults))
	for _, f := range faults {
		if f.Lasts+settle > slot {
			return nil, fmt.Errorf("%s lasts %v: does not fit a %v slot with %v to settle (a longer run, or fewer faults)", f.Kind, f.Lasts, slot, settle)
		}
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	order := r.Perm(len(faults))
	plan := make(Plan, 0, len(faults))
	for i, fi := range order {
		f := faults[fi]
		room := slot - f.Lasts - settle
		at := start + time.Duration(i)*slot + time.Duration(r.Int64N(int64(room)+1))
		plan = append(plan, Event{Fault: f, At: at})
	}
	return plan, nil
}
