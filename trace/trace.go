// Package trace is Forewarm's in-memory form of a workload: per-application
// request counts on a regular grid of bins, with each application's size and
// access pattern. Loaders (Azure 2019, events CSV) and the synthetic
// generator produce it; the store, the models, the simulator and replay
// consume it.
package trace

import "time"

// Trace is per-application request counts on a regular bin grid.
type Trace struct {
	Start time.Time     // start of bin 0, UTC
	Bin   time.Duration // bin width
	Bins  int           // number of bins; every App.Counts has this length
	Apps  []App         // sorted by ID, IDs unique
}

// App is one application's profile and its counts.
type App struct {
	ID         string
	MemoryMB   float64  // typical memory per request; 0 when unknown
	ReadRatio  float64  // share of I/O that is reads, 0..1
	DurationMS float64  // mean work per request; 0 when unknown
	Counts     []uint32 // requests per bin, len == Trace.Bins
}

// BinStart is the start time of bin b.
func (t *Trace) BinStart(b int) time.Time { return t.Start.Add(time.Duration(b) * t.Bin) }

// Total is the number of requests in the whole trace.
func (t *Trace) Total() uint64 {
	var n uint64
	for _, a := range t.Apps {
		for _, c := range a.Counts {
			n += uint64(c)
		}
	}
	return n
}
