// Package replay drives live requests from a trace: it walks the trace bin
// by bin at a chosen speed and hands each request to a Sender (in Forewarm,
// one that starts the serve-request workflow). It owns pacing, spreading a
// bin's requests over the bin's wall-clock time, bounded concurrency, and a
// clean stop on cancellation; it knows nothing of Temporal.
package replay

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forewarm/forewarm/trace"
)

// Request is one request taken from the trace.
type Request struct {
	App        string
	TraceTime  time.Time // when it happened in the trace
	Bin        int       // trace bin index
	Seq        int       // position within its app's bin
	MemoryMB   float64
	ReadRatio  float64
	DurationMS float64
}

// Sender delivers one request; a returned error counts as a failed request
// and does not stop the replay.
type Sender func(ctx context.Context, r Request) error

// Options choose what to replay and how fast.
type Options struct {
	From       int       // first trace bin
	Bins       int       // number of bins (0 = to the end of the trace)
	Speed      float64   // trace time / wall time; 60 plays a 1-minute bin in 1 s
	Apps       []string  // apps to replay (nil = all)
	MaxPerBin  int       // cap on one app's requests in one bin (0 = no cap)
	InFlight   int       // concurrent sends (default 32)
	StartAt    time.Time // wall time the first bin begins (zero: at once)
	Now        func() time.Time
	Sleep      func(ctx context.Context, d time.Duration) error
	OnProgress func(Progress) // called after every bin
}

// Progress is the state after a bin.
type Progress struct {
	TraceTime time.Time // end of the last bin played
	BinsDone  int
	BinsTotal int
	Sent      int64
	Failed    int64
	Skipped   int64 // dropped by MaxPerBin
}

// Summary is the outcome of a whole replay.
type Summary struct {
	Progress
	Interrupted bool
	Began       time.Time     // wall time the first bin began
	BinWall     time.Duration // wall time of one bin
	Wall        time.Duration
}

// Validate checks the options against the trace.
func (o *Options) Validate(t *trace.Trace) error {
	if o.Speed <= 0 {
		return fmt.Errorf("speed must be positive, got %g", o.Speed)
	}
	if o.From < 0 || o.From >= t.Bins {
		return fmt.Errorf("from bin %d is outside the trace's %d bins", o.From, t.Bins)
	}
	if o.Bins < 0 {
		return fmt.Errorf("bins must not be negative, got %d", o.Bins)
	}
	if o.MaxPerBin < 0 {
		return fmt.Errorf("max per bin must not be negative, got %d", o.MaxPerBin)
	}
	return nil
}

// Run plays the trace. It returns when every bin is played or ctx is
// cancelled (Summary.Interrupted); requests already handed to the Sender
// are waited for either way.
func Run(ctx context.Context, t *trace.Trace, opt Options, send Sender) (Summary, error) {
	if err := opt.Validate(t); err != nil {
		return Summary{}, err
	}
	apps, err := pick(t, opt.Apps)
	if err != nil {
		return Summary{}, err
	}
	end := t.Bins
	if opt.Bins > 0 && opt.From+opt.Bins < end {
		end = opt.From + opt.Bins
	}
	if opt.InFlight <= 0 {
		opt.InFlight = 32
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Sleep == nil {
		opt.Sleep = sleep
	}
	binWall := time.Duration(float64(t.Bin) / opt.Speed)

	var (
		sent, failed atomic.Int64
		wg           sync.WaitGroup
		slots        = make(chan struct{}, opt.InFlight)
		sum          = Summary{Progress: Progress{BinsTotal: end - opt.From}}
	)
	began := opt.Now()
	if !opt.StartAt.IsZero() {
		if err := opt.Sleep(ctx, opt.StartAt.Sub(began)); err != nil {
			return Summary{Interrupted: true}, nil
		}
		began = opt.StartAt
	}

	for b := opt.From; b < end; b++ {
		reqs, skipped := binRequests(t, apps, b, opt.MaxPerBin)
		sum.Skipped += int64(skipped)
		binBegan := began.Add(time.Duration(b-opt.From) * binWall)
		for i, r := range reqs {
			// Spread the bin's requests evenly over its wall time.
			at := binBegan.Add(time.Duration(i) * binWall / time.Duration(len(reqs)))
			if err := opt.Sleep(ctx, at.Sub(opt.Now())); err != nil {
				sum.Interrupted = true
				break
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				sum.Interrupted = true
				break
			}
			wg.Add(1)
			go func(r Request) {
				defer func() { <-slots; wg.Done() }()
				if err := send(ctx, r); err != nil {
					failed.Add(1)
					return
				}
				sent.Add(1)
			}(r)
		}
		if !sum.Interrupted {
			sum.Interrupted = opt.Sleep(ctx, binBegan.Add(binWall).Sub(opt.Now())) != nil
		}
		if sum.Interrupted {
			break
		}
		sum.BinsDone++
		sum.TraceTime = t.BinStart(b + 1)
		if opt.OnProgress != nil {
			p := sum.Progress
			p.Sent, p.Failed = sent.Load(), failed.Load()
			opt.OnProgress(p)
		}
	}
	wg.Wait()
	sum.Sent, sum.Failed = sent.Load(), failed.Load()
	sum.Began, sum.BinWall = began, binWall
	sum.Wall = opt.Now().Sub(began)
	return sum, nil
}

func pick(t *trace.Trace, ids []string) ([]*trace.App, error) {
	if ids == nil {
		out := make([]*trace.App, len(t.Apps))
		for i := range t.Apps {
			out[i] = &t.Apps[i]
		}
		return out, nil
	}
	byID := make(map[string]*trace.App, len(t.Apps))
	for i := range t.Apps {
		byID[t.Apps[i].ID] = &t.Apps[i]
	}
	out := make([]*trace.App, 0, len(ids))
	for _, id := range ids {
		a, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("application %q is not in the trace", id)
		}
		out = append(out, a)
	}
	return out, nil
}

// binRequests lists bin b's requests, interleaving apps so one busy app
// does not delay the others within the bin.
func binRequests(t *trace.Trace, apps []*trace.App, b, maxPerBin int) ([]Request, int) {
	var reqs []Request
	skipped := 0
	for round := 0; ; round++ {
		added := false
		for _, a := range apps {
			n := int(a.Counts[b])
			if maxPerBin > 0 && n > maxPerBin {
				if round == 0 {
					skipped += n - maxPerBin
				}
				n = maxPerBin
			}
			if round >= n {
				continue
			}
			added = true
			reqs = append(reqs, Request{
				App: a.ID, TraceTime: t.BinStart(b), Bin: b, Seq: round,
				MemoryMB: a.MemoryOrDefault(), ReadRatio: a.ReadRatio, DurationMS: a.DurationMS,
			})
		}
		if !added {
			return reqs, skipped
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
