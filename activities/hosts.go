package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/batch"
	"github.com/forewarm/forewarm/models/affinity/score"
	"github.com/forewarm/forewarm/store/records"
)

// Hosts reserves, validates, serves on and releases host resources, and
// records every step as a preparation event.
type Hosts struct {
	Directory HostDirectory
	Affinity  AffinityScorer
	Clients   HostClients
	Recorder  Recorder
	// Unrecorded keeps the events the store refused (it is down) and
	// writes them when it is back, so an outage neither stops preparations
	// nor loses their events (unless the worker stops before the store is
	// back: its Close logs and returns how many are lost); nil: a refused
	// event fails the activity.
	Unrecorded *batch.Batcher[records.PreparationEvent]
	Log        *slog.Logger
}

// RankHosts ranks the live hosts for the application in two steps: the
// capacity filter drops the hosts that cannot take it (score.Fits; they
// are listed in Rejected with why), then each remaining host is scored:
// the affinity model's score plus the adjustment observed for this
// (app, host) pair, clamped to [0, 1], every part kept (score.Parts);
// best first, ties by free memory then host ID.
func (h *Hosts) RankHosts(ctx context.Context, in wire.RankInput) (wire.RankResult, error) {
	live, err := h.Directory.LiveHosts(ctx)
	if err != nil {
		return wire.RankResult{}, fmt.Errorf("list live hosts: %w", err)
	}
	// The directory's list may be shared (a cache): filter into a new one.
	var hosts []HostInfo
	var rejected []wire.RejectedHost
	seen := 0
	for _, x := range live {
		if slices.Contains(in.Exclude, x.ID) {
			continue
		}
		seen++
		if ok, why := score.Fits(in.Profile.MemoryMB, x.FreeMemMB); ok {
			hosts = append(hosts, x)
		} else {
			rejected = append(rejected, wire.RejectedHost{Host: x.ID, Reason: why})
		}
	}
	if seen == 0 {
		return wire.RankResult{}, nonRetryable(wire.ErrNoHosts, errors.New("no live host agent (none registered in the last 30 s, or all excluded): start one with `hostagent`"))
	}
	if len(hosts) == 0 {
		return wire.RankResult{}, nonRetryable(wire.ErrNoHosts, fmt.Errorf("no live host can take %s: %s", in.Profile.App, rejectedText(rejected)))
	}
	scores, version, err := h.Affinity.Score(ctx, in.Profile, hosts)
	if err != nil {
		return wire.RankResult{}, fmt.Errorf("affinity scores for %s: %w", in.Profile.App, err)
	}
	out := make([]wire.HostCandidate, len(hosts))
	for i, x := range hosts {
		p := score.Combine(scores[i], in.Adjustments[x.ID])
		out[i] = wire.HostCandidate{Host: x.ID, URL: x.URL, ModelScore: p.Model, Adjustment: p.Adjustment, Score: p.Score, FreeMemMB: x.FreeMemMB}
	}
	slices.SortFunc(out, func(a, b wire.HostCandidate) int {
		switch {
		case a.Score != b.Score:
			return cmpDesc(a.Score, b.Score)
		case a.FreeMemMB != b.FreeMemMB:
			return cmpDesc(a.FreeMemMB, b.FreeMemMB)
		}
		return strings.Compare(a.Host, b.Host)
	})
	return wire.RankResult{Candidates: out, Rejected: rejected, ModelVersion: version}, nil
}

func rejectedText(rs []wire.RejectedHost) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Host + " " + r.Reason
	}
	return strings.Join(parts, "; ")
}

func cmpDesc(a, b float64) int {
	if a > b {
		return -1
	}
	return 1
}

// Reserve asks the host for the resources. Idempotent per lease ID on the
// host side, so a retry after a lost reply does not reserve twice.
func (h *Hosts) Reserve(ctx context.Context, in wire.ReserveInput) (wire.ReserveResult, error) {
	if in.LeaseID == "" || in.Candidate.URL == "" || in.TTL <= 0 {
		return wire.ReserveResult{}, nonRetryable(wire.ErrBadInput, fmt.Errorf("reserve: lease %q, host URL %q, TTL %v: all are required", in.LeaseID, in.Candidate.URL, in.TTL))
	}
	c := h.Clients.For(in.Candidate.Host, in.Candidate.URL)
	expires, err := c.Reserve(ctx, HostReservation{LeaseID: in.LeaseID, App: in.App, MemoryMB: in.MemoryMB,
		DiskMB: in.DiskMB, CPUMilli: in.CPUMilli, TTL: in.TTL})
	if err != nil {
		if h.Clients.Permanent(err) {
			return wire.ReserveResult{}, nonRetryable(wire.ErrHostRejected, fmt.Errorf("host %s refused lease %s: %w", in.Candidate.Host, in.LeaseID, err))
		}
		return wire.ReserveResult{}, fmt.Errorf("reserve lease %s on %s: %w", in.LeaseID, in.Candidate.Host, err)
	}
	now := time.Now().UTC()
	if err := h.record(ctx, records.PreparationEvent{Time: now, PreparationID: in.LeaseID, App: in.App, Host: in.Candidate.Host, Event: records.EventReserved,
		MemoryMB: in.MemoryMB, DiskMB: in.DiskMB, CPUMilli: in.CPUMilli,
		Reason: fmt.Sprintf("score %.3f (model %.3f, adjustment %+.3f)", in.Candidate.Score, in.Candidate.ModelScore, in.Candidate.Adjustment)}); err != nil {
		return wire.ReserveResult{}, err
	}
	return wire.ReserveResult{Reserved: now, Expires: expires}, nil
}

// Shadow runs a small slice of the expected work on the reservation and
// heartbeats while it waits. A refused or too slow shadow is a result (the
// workflow releases and moves on), not an error to retry.
func (h *Hosts) Shadow(ctx context.Context, in wire.ShadowInput) (wire.ShadowResult, error) {
	stop := heartbeatEvery(ctx, time.Second, in.LeaseID)
	defer stop()
	ms, err := h.Clients.For(in.Host, in.HostURL).Shadow(ctx, in.LeaseID, in.ReadRatio, in.SampleMB)
	var res wire.ShadowResult
	switch {
	case err != nil && h.Clients.Permanent(err):
		res = wire.ShadowResult{Reason: "host refused the shadow request: " + err.Error()}
	case err != nil:
		return wire.ShadowResult{}, fmt.Errorf("shadow request for %s on %s: %w", in.LeaseID, in.Host, err)
	case in.MaxMS > 0 && ms > in.MaxMS:
		res = wire.ShadowResult{ShadowMS: ms, Reason: fmt.Sprintf("shadow took %.1f ms, more than the %.1f ms allowed", ms, in.MaxMS)}
	default:
		res = wire.ShadowResult{OK: true, ShadowMS: ms}
	}
	ev := records.PreparationEvent{Time: time.Now().UTC(), PreparationID: in.LeaseID, App: in.App, Host: in.Host, Event: records.EventValidated, ShadowMS: res.ShadowMS}
	if !res.OK {
		ev.Event, ev.Reason = records.EventFailed, res.Reason
	}
	if err := h.record(ctx, ev); err != nil {
		return wire.ShadowResult{}, err
	}
	return res, nil
}

// Release gives the reservation back (a lease the host no longer knows is
// already released) and records the event with how long it was held: an
// "expired" event is wasted resource-time.
func (h *Hosts) Release(ctx context.Context, in wire.ReleaseInput) (wire.ReleaseResult, error) {
	rel, err := h.Clients.For(in.Host, in.HostURL).Release(ctx, in.LeaseID)
	held := rel.Released
	switch {
	case err != nil && h.Clients.NotFound(err):
		held = false
	case err != nil && h.Clients.Permanent(err):
		return wire.ReleaseResult{}, nonRetryable(wire.ErrHostRejected, fmt.Errorf("release %s on %s: %w", in.LeaseID, in.Host, err))
	case err != nil:
		return wire.ReleaseResult{}, fmt.Errorf("release %s on %s: %w", in.LeaseID, in.Host, err)
	}
	ev := records.PreparationEvent{Time: time.Now().UTC(), PreparationID: in.LeaseID, App: in.App, Host: in.Host, Event: in.Event,
		MemoryMB: in.MemoryMB, DiskMB: in.DiskMB, CPUMilli: in.CPUMilli, Reason: in.Reason, HeldSeconds: in.HeldSeconds}
	if ev.Event == "" {
		ev.Event = records.EventReleased
	}
	if err == nil {
		endedBefore(&ev, rel)
		ev.BusyMBs = rel.BusyMBs
	}
	if err := h.record(ctx, ev); err != nil {
		return wire.ReleaseResult{}, err
	}
	return wire.ReleaseResult{WasHeld: held, RequestsServed: rel.RequestsServed, BusyMBs: rel.BusyMBs, IdleMBs: rel.IdleMBs,
		Fallbacks: rel.Fallbacks}, nil
}

// endedBefore makes ev the end the host remembers of a lease that had
// ended before its release or extension reached it: failed (its instance
// exited or was killed) or expired, when and after how long, rather than
// the caller's view. A lease this release ended leaves ev as it is.
func endedBefore(ev *records.PreparationEvent, rel HostReleased) {
	if rel.Released || rel.State == "" {
		return
	}
	switch rel.State {
	case "failed":
		ev.Event = records.EventFailed
	case "expired":
		ev.Event = records.EventExpired
	default:
		ev.Event = records.EventReleased
	}
	ev.Reason = "ended on the host as " + rel.State
	if rel.Note != "" {
		ev.Reason += ": " + rel.Note
	}
	if !rel.EndedAt.IsZero() {
		ev.Time = rel.EndedAt.UTC()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if rel.HeldSeconds > 0 {
		ev.HeldSeconds = rel.HeldSeconds
	}
}

// Extend sets a live lease's expiry in place on its host: no new
// reservation, no shadow. A refusal is a result, not an error to retry:
// Gone when the host no longer holds the lease.
func (h *Hosts) Extend(ctx context.Context, in wire.ExtendInput) (wire.ExtendResult, error) {
	if in.LeaseID == "" || in.HostURL == "" || in.TTL <= 0 {
		return wire.ExtendResult{}, nonRetryable(wire.ErrBadInput, fmt.Errorf("extend: lease %q, host URL %q, TTL %v: all are required", in.LeaseID, in.HostURL, in.TTL))
	}
	c := h.Clients.For(in.Host, in.HostURL)
	expires, err := c.Extend(ctx, in.LeaseID, in.App, in.TTL)
	switch {
	case err != nil && h.Clients.NotFound(err):
		// Gone before its loop let it go (its instance failed, its TTL
		// passed): the host remembers how; that end is recorded, so the
		// lease's life in the history ends where it did.
		if rel, rerr := c.Release(ctx, in.LeaseID); rerr == nil && !rel.Released && rel.State != "" {
			ev := records.PreparationEvent{PreparationID: in.LeaseID, App: in.App, Host: in.Host, BusyMBs: rel.BusyMBs}
			endedBefore(&ev, rel)
			if err := h.record(ctx, ev); err != nil {
				return wire.ExtendResult{}, err
			}
		}
		return wire.ExtendResult{Gone: true, Reason: err.Error()}, nil
	case err != nil && h.Clients.Permanent(err):
		return wire.ExtendResult{Reason: "host refused the extension: " + err.Error()}, nil
	case err != nil:
		return wire.ExtendResult{}, fmt.Errorf("extend %s on %s: %w", in.LeaseID, in.Host, err)
	}
	if err := h.record(ctx, records.PreparationEvent{Time: time.Now().UTC(), PreparationID: in.LeaseID, App: in.App, Host: in.Host, Event: records.EventExtended,
		Reason: fmt.Sprintf("until %s", expires.UTC().Format(time.RFC3339Nano))}); err != nil {
		return wire.ExtendResult{}, err
	}
	return wire.ExtendResult{Extended: true, Expires: expires}, nil
}

// Serve runs the request on the host: warm on the lease when one is given
// (the lease keeps serving afterwards), cold otherwise, keeping the cold
// instance as a new lease when KeepID asks. The host runs a request ID
// once, so a retried activity does not serve twice.
func (h *Hosts) Serve(ctx context.Context, in wire.ServeInput) (wire.ServeResult, error) {
	if in.HostURL == "" {
		return wire.ServeResult{}, nonRetryable(wire.ErrBadInput, fmt.Errorf("serve %s: no host URL", in.RequestID))
	}
	c := h.Clients.For(in.Host, in.HostURL)
	r, err := c.Serve(ctx, in.HostServing)
	if err != nil {
		if h.Clients.Permanent(err) {
			return wire.ServeResult{}, nonRetryable(wire.ErrHostRejected, fmt.Errorf("host %s refused request %s: %w", in.Host, in.RequestID, err))
		}
		return wire.ServeResult{}, fmt.Errorf("serve %s on %s: %w", in.RequestID, in.Host, err)
	}
	if in.LeaseID != "" && !in.LeaseStays {
		// The caller handed the lease to this request for good: end it,
		// also when the request ran cold beside it (busy or too small), so
		// nothing is left for the TTL to reclaim.
		if _, err := c.Release(ctx, in.LeaseID); err != nil && !h.Clients.NotFound(err) {
			h.logger().Warn("release of a one-request lease failed; its TTL ends it", "lease", in.LeaseID, "host", in.Host, "err", err)
		}
	}
	// Recorded on a replayed result too: the attempt before may have
	// failed to record it (a lost reply may then record it twice).
	if r.Kept {
		if err := h.record(ctx, records.PreparationEvent{Time: time.Now().UTC(), PreparationID: in.KeepID, App: in.App, Host: in.Host, Event: records.EventKept,
			MemoryMB: max(in.KeepMemoryMB, in.MemoryMB), DiskMB: max(in.KeepDiskMB, in.DiskMB), CPUMilli: in.KeepCPUMilli,
			Reason: "instance of cold request " + in.RequestID}); err != nil {
			return wire.ServeResult{}, err
		}
	}
	return r, nil
}

// record writes a preparation event: the report's memory-time is read
// from them, so none is lost quietly. When the store refuses it, the event
// goes to Unrecorded (written when the store is back; the refusal is
// logged, and counted by the Recorder) or, without it, fails the activity
// (its host call is idempotent per lease, so the retry records it).
func (h *Hosts) record(ctx context.Context, ev records.PreparationEvent) error {
	if h.Recorder == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := h.Recorder.RecordPreparationEvents(wctx, []records.PreparationEvent{ev})
	switch {
	case err == nil:
		return nil
	case h.Unrecorded != nil:
		h.logger().Warn("preparation event not recorded; kept to write when the store is back", "lease", ev.PreparationID, "event", ev.Event, "err", err)
		h.Unrecorded.Add(ev)
		return nil
	}
	return fmt.Errorf("record the %s event of %s: %w", ev.Event, ev.PreparationID, err)
}

func (h *Hosts) logger() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

// heartbeatEvery heartbeats until stop is called, so a long host call is
// noticed dead within the heartbeat timeout and cancellation reaches it.
func heartbeatEvery(ctx context.Context, every time.Duration, details any) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, details)
			}
		}
	}()
	return func() { close(done) }
}
