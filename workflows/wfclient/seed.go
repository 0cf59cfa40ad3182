package wfclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/workflows"
)

// SeedSource is the stored history loops are seeded from (*store.Store).
type SeedSource interface {
	AppProfiles(ctx context.Context) ([]store.AppProfile, error)
	RecentActivity(ctx context.Context, apps []string, end time.Time, bins int, bin time.Duration) (map[string][]float64, error)
	Adjustments(ctx context.Context) (map[[2]string]float64, error)
}

// Seed says which loops to start and how.
type Seed struct {
	Apps   []string // the applications (with All: ignored)
	All    bool     // every application the store knows
	Bin    time.Duration
	Window int
	Policy workflows.Policy
	// End, when set, seeds the loops from stored history ending there
	// rather than now, at SeedBin (0: Bin): a trace loaded at its own dates
	// continued live. When SeedBin differs from Bin the loops get a trace
	// clock whose first live bin begins at ClockStart.
	End        time.Time
	SeedBin    time.Duration
	ClockStart time.Time
	// MemoryScale scales the stored memory sizes (0: 1), as a replay on
	// one machine scales its requests.
	MemoryScale float64
}

// Stored says the loops read the store: every application, or history
// that ends elsewhere than now. Otherwise each loop seeds itself.
func (s Seed) Stored() bool { return s.All || !s.End.IsZero() }

// clock is the trace clock of loops seeded from history at another bin
// width: the live bin starting at ClockStart continues the history at End.
func (s Seed) clock() *workflows.TraceClock {
	if s.End.IsZero() || s.seedBin() == s.Bin {
		return nil
	}
	return &workflows.TraceClock{RealStart: s.ClockStart, TraceStart: s.End, TraceBin: s.seedBin()}
}

func (s Seed) seedBin() time.Duration {
	if s.SeedBin > 0 {
		return s.SeedBin
	}
	return s.Bin
}

// LoopInputs builds the loops' inputs. Unless the seed is Stored, each loop
// starts empty and seeds itself; otherwise the profiles, recent activity
// and adjustments of every application come from src in three queries in
// all, whatever the number of loops.
func LoopInputs(ctx context.Context, src SeedSource, s Seed, now time.Time) ([]workflows.LoopInput, error) {
	if !s.Stored() {
		out := make([]workflows.LoopInput, len(s.Apps))
		for i, a := range s.Apps {
			out[i] = workflows.LoopInput{App: a, Bin: s.Bin, Window: s.Window, Policy: s.Policy}
		}
		return out, nil
	}
	profiles, err := src.AppProfiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	if !s.All {
		if profiles, err = pick(profiles, s.Apps); err != nil {
			return nil, err
		}
	}
	if len(profiles) == 0 {
		return nil, errors.New("the store knows no application; load history first (`starter history load ...`)")
	}
	ids := make([]string, len(profiles))
	for i, p := range profiles {
		ids[i] = p.ID
	}
	end := now.UTC().Truncate(s.Bin)
	if !s.End.IsZero() {
		end = s.End
	}
	recent, err := src.RecentActivity(ctx, ids, end, s.Window, s.seedBin())
	if err != nil {
		return nil, fmt.Errorf("seed recent activity: %w", err)
	}
	adjustments, err := src.Adjustments(ctx)
	if err != nil {
		return nil, fmt.Errorf("read affinity adjustments: %w", err)
	}
	scale := s.MemoryScale
	if scale <= 0 {
		scale = 1
	}
	out := make([]workflows.LoopInput, len(profiles))
	for i, p := range profiles {
		prof := wire.AppProfile{App: p.ID, MemoryMB: p.MemoryMB, ReadRatio: p.ReadRatio, DurationMS: p.DurationMS, VolumeType: p.VolumeType}.WithDefaults()
		prof.MemoryMB = max(1, prof.MemoryMB*scale)
		prof.DiskMB = prof.MemoryMB / 4
		adj := map[string]float64{}
		for k, v := range adjustments {
			if k[0] == p.ID {
				adj[k[1]] = v
			}
		}
		in := workflows.LoopInput{App: p.ID, Bin: s.Bin, Window: s.Window, Policy: s.Policy, Seeded: true, Recent: recent[p.ID],
			Adjustments: adj, Profile: prof, Clock: s.clock()}
		if in.Clock != nil {
			// The loop decides the clock's first bin as it begins: the last
			// stored bin stands for the bin open until then.
			in.BinEnd = s.ClockStart
			in.SeedEnd = s.ClockStart // a router-mode loop's history before it is the seed
			if n := len(in.Recent); n > 0 {
				in.Pending = in.Recent[n-1]
				in.Recent = in.Recent[:n-1]
			}
		}
		out[i] = in
	}
	return out, nil
}

// pick keeps the profiles of apps, in their order; an application the
// store does not know is an error naming it.
func pick(all []store.AppProfile, apps []string) ([]store.AppProfile, error) {
	byID := make(map[string]store.AppProfile, len(all))
	for _, p := range all {
		byID[p.ID] = p
	}
	out := make([]store.AppProfile, 0, len(apps))
	for _, a := range apps {
		p, ok := byID[a]
		if !ok {
			return nil, fmt.Errorf("application %q has no stored history; load it first (`starter history load ...`)", a)
		}
		out = append(out, p)
	}
	return out, nil
}
