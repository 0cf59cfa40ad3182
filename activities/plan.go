package activities

import (
	"context"
	"time"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/policy"
)

// Plan is what a router-mode loop decided at its last wake and will do,
// asleep, until its next: it holds an instance through every bin before
// NextWake (Holding) or none. The Forecast activity registers it with the
// worker's Watch.
type Plan struct {
	WorkflowID string
	App        string
	Wake       time.Time     // start of the bin decided at the wake (live time)
	NextWake   time.Time     // start of the bin the loop decides next
	Bin        time.Duration // the loop's bin (live)
	Holding    bool
	// ReleaseAt, when set, is the bin a holding plan lets go at if no
	// request arrives first; the loop sleeps past it (to NextWake) and the
	// watch wakes it then. Zero: the loop wakes for its next change itself.
	ReleaseAt time.Time
	Keep      float64 // the application's keep threshold (without Policy)
	// Policy, when set, is what the loop decides by (with MemoryMB): an
	// arrival wakes a holding loop when policy.Config.Decide would let go.
	Policy   *policy.Config
	MemoryMB float64
	// Next and ModelBin place Wake on the model's timeline (a trace clock
	// maps live bins onto trace bins).
	Next     time.Time
	ModelBin time.Duration
	Window   int    // bins of history the loop gives the model
	Model    string // the model version that made the plan
}

// PlanWatch is the worker's watch of router-mode loops
// (resident.Watch): the Forecast activity registers each plan with it and
// reads the loop's counts from its mirror of the recorded arrivals. It is
// an interface because the watch asks the Predictor for the champion
// model in turn.
type PlanWatch interface {
	Register(Plan)
	// Arrivals is the mirror, nil when the worker mirrors none.
	Arrivals() Arrivals
}

// Arrivals is the worker's mirror of the recorded arrivals
// (resident.Mirror), as a router-mode loop's forecast reads it.
type Arrivals interface {
	// BinWidth is the width of the bins it mirrors.
	BinWidth() time.Duration
	// Seed gives it a loop's history of the bins before end, which the
	// router cannot have recorded.
	Seed(app string, end time.Time, counts []float64) error
	// Freeze reads the bins before through, once each.
	Freeze(ctx context.Context, through time.Time) error
	// Window is the n bins of app before end, oldest first.
	Window(app string, end time.Time, n int) (wire.Counts, error)
}
