package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store/records"
)

// PrepareInput asks for leases on the best TopN hosts for an application.
type PrepareInput struct {
	App         string
	Profile     wire.AppProfile
	TopN        int
	TTL         time.Duration
	MaxShadowMS float64
	SampleMB    float64
	Adjustments map[string]float64
	// MaxHosts bounds how many hosts are tried (default TopN + 2).
	MaxHosts int
}

// PrepareAttempt is what happened on one host.
type PrepareAttempt struct {
	Host     string
	Score    float64
	Outcome  string // prepared | reserve-failed | shadow-failed | cancelled
	ShadowMS float64
	Reason   string
}

// PrepareResult is the validated leases and every attempt, in order.
type PrepareResult struct {
	Leases   []wire.Lease
	Attempts []PrepareAttempt
}

// Summary is a one-line account of the attempts.
func (r PrepareResult) Summary() string {
	if len(r.Attempts) == 0 {
		return "no host tried"
	}
	parts := make([]string, len(r.Attempts))
	for i, a := range r.Attempts {
		parts[i] = a.Host + ": " + a.Outcome
		if a.Reason != "" {
			parts[i] += " (" + a.Reason + ")"
		}
	}
	return strings.Join(parts, "; ")
}

// Preparation reserves on the best host, proves it ready with a shadow
// request, and on a failed or too slow shadow releases and tries the next
// host, until TopN leases are validated or the candidates run out. Whatever
// it reserved and does not hand back is released on every path, including
// cancellation (through a disconnected context).
func Preparation(ctx workflow.Context, in PrepareInput) (res PrepareResult, err error) {
	if in.TopN <= 0 || in.TTL <= 0 || in.App == "" {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("preparation: app %q, top-N %d, TTL %v: all are required", in.App, in.TopN, in.TTL), wire.ErrBadInput, nil)
	}
	maxHosts := in.MaxHosts
	if maxHosts <= 0 {
		maxHosts = in.TopN + 2
	}
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	in.Profile.App = in.App

	quick := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{wire.ErrHostRejected, wire.ErrBadInput, wire.ErrNoHosts}},
	})
	var ranked wire.RankResult
	rankFor := fmt.Sprintf("rank hosts for %d lease(s) of %s, %.0f MB", in.TopN, in.App, in.Profile.MemoryMB)
	if err := workflow.ExecuteActivity(withSummary(quick, rankFor), ActivityRankHosts, wire.RankInput{Profile: in.Profile, Adjustments: in.Adjustments}).Get(ctx, &ranked); err != nil {
		return res, fmt.Errorf("rank hosts for %s: %w", in.App, err)
	}

	// held are reservations not (yet) handed back to the loop.
	var held []wire.Lease
	defer func() {
		if len(held) == 0 {
			return
		}
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		reason := "preparation failed"
		if ctx.Err() != nil {
			reason = "preparation cancelled"
		}
		for _, ls := range held {
			releaseNow(dctx, ls, records.EventReleased, reason)
		}
	}()

	workflow.SetCurrentDetails(ctx, rankDetails(in, ranked))
	for _, c := range ranked.Candidates {
		if len(res.Leases) >= in.TopN || len(res.Attempts) >= maxHosts || ctx.Err() != nil {
			break
		}
		attempt, ls := tryHost(ctx, quick, in, LeaseID(id, c.Host), c, ranked.ModelVersion, &held)
		res.Attempts = append(res.Attempts, attempt)
		if ls != nil {
			res.Leases = append(res.Leases, *ls)
		}
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	// Validated leases now belong to the loop.
	held = nil
	if len(res.Leases) > 0 {
		upsertHost(ctx, res.Leases[0].Host)
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("prepared %d of %d: %s", len(res.Leases), in.TopN, res.Summary()))
	return res, nil
}

// rankDetails is the Web UI's account of a ranking: every candidate with
// its score's parts, every host that cannot take the lease and why.
func rankDetails(in PrepareInput, ranked wire.RankResult) string {
	var rank strings.Builder
	fmt.Fprintf(&rank, "%d candidate host(s) for %s, preparing %d:", len(ranked.Candidates), in.App, in.TopN)
	for _, c := range ranked.Candidates {
		fmt.Fprintf(&rank, " %s %s;", c.Host, c.Parts())
	}
	for _, r := range ranked.Rejected {
		fmt.Fprintf(&rank, " %s cannot take it (%s);", r.Host, r.Reason)
	}
	return strings.TrimSuffix(rank.String(), ";")
}

// tryHost reserves a lease on one candidate host and proves it with a
// shadow request: the attempt, and the lease when it is ready. The lease
// is in held from before the reserve (a reply lost after the host
// reserved must still be released) until it fails and is released here.
func tryHost(ctx, quick workflow.Context, in PrepareInput, leaseID string, c wire.HostCandidate, modelVersion string, held *[]wire.Lease) (PrepareAttempt, *wire.Lease) {
	logger := workflow.GetLogger(ctx)
	attempt := PrepareAttempt{Host: c.Host, Score: c.Score}
	ls := wire.Lease{LeaseID: leaseID, App: in.App, Host: c.Host, HostURL: c.URL,
		MemoryMB: in.Profile.MemoryMB, DiskMB: in.Profile.DiskMB, CPUMilli: in.Profile.CPUMilli,
		Score: c.Score, Adjusted: c.Adjustment, ModelScore: c.ModelScore, ModelVers: modelVersion}
	drop := func(event, reason string, attempts int32) {
		if ctx.Err() == nil {
			releaseWith(ctx, ls, event, reason, attempts)
			*held = (*held)[:len(*held)-1]
		}
	}

	rctx := workflow.WithActivityOptions(quick, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{wire.ErrHostRejected, wire.ErrBadInput}},
		Summary: "reserve on " + c.Host,
	})
	var rr wire.ReserveResult
	*held = append(*held, ls)
	err := workflow.ExecuteActivity(rctx, ActivityReserve, wire.ReserveInput{LeaseID: leaseID, App: in.App, Candidate: c,
		MemoryMB: ls.MemoryMB, DiskMB: ls.DiskMB, CPUMilli: ls.CPUMilli, TTL: in.TTL}).Get(ctx, &rr)
	if err != nil {
		attempt.Outcome, attempt.Reason = "reserve-failed", rootMessage(err)
		logger.Warn("reserve failed; trying the next host", "host", c.Host, "error", err)
		// The reserve may have reached the host before its answer was
		// lost: release it, but briefly — a host that did not answer
		// three reserves is likely down (its TTL frees the rest) and
		// the next host must not wait for it.
		drop(records.EventFailed, "reserve failed: "+attempt.Reason, 2)
		return attempt, nil
	}
	// The loop expires leases on workflow time; the host's own expiry
	// (its clock) bounds it when earlier.
	ls.Reserved = workflow.Now(ctx)
	ls.Expires = ls.Reserved.Add(in.TTL)
	if !rr.Expires.IsZero() && rr.Expires.Before(ls.Expires) {
		ls.Expires = rr.Expires
	}

	sctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		HeartbeatTimeout:    5 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 2, NonRetryableErrorTypes: []string{wire.ErrBadInput}},
		Summary:             "shadow request on " + c.Host,
	})
	var sr wire.ShadowResult
	err = workflow.ExecuteActivity(sctx, ActivityShadow, wire.ShadowInput{LeaseID: leaseID, App: in.App, Host: c.Host, HostURL: c.URL,
		ReadRatio: in.Profile.ReadRatio, SampleMB: in.SampleMB, MaxMS: in.MaxShadowMS}).Get(ctx, &sr)
	if err == nil && sr.OK {
		ls.ShadowMS = sr.ShadowMS
		attempt.Outcome, attempt.ShadowMS = "prepared", sr.ShadowMS
		return attempt, &ls
	}
	attempt.Outcome, attempt.ShadowMS, attempt.Reason = "shadow-failed", sr.ShadowMS, sr.Reason
	if err != nil {
		attempt.Reason = rootMessage(err)
	}
	logger.Warn("shadow validation failed; releasing and trying the next host", "host", c.Host, "reason", attempt.Reason)
	drop(records.EventFailed, "shadow failed: "+attempt.Reason, 5)
	return attempt, nil
}

// upsertHost tags the workflow with the host it prepared or served on, so
// the Web UI can filter by host.
func upsertHost(ctx workflow.Context, host string) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrHost.ValueSet(host)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "error", err)
	}
}

// releaseNow releases a reservation and waits; errors are logged (the
// host's own TTL frees the resources in the end).
func releaseNow(ctx workflow.Context, ls wire.Lease, event, reason string) {
	releaseWith(ctx, ls, event, reason, 5)
}

// releaseWith is releaseNow with at most attempts tries.
func releaseWith(ctx workflow.Context, ls wire.Lease, event, reason string, attempts int32) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: attempts, NonRetryableErrorTypes: []string{wire.ErrHostRejected}},
		Summary:             "release " + ls.LeaseID,
	})
	held := 0.0
	if !ls.Reserved.IsZero() {
		held = workflow.Now(ctx).Sub(ls.Reserved).Seconds()
	}
	err := workflow.ExecuteActivity(actx, ActivityRelease, wire.ReleaseInput{LeaseID: ls.LeaseID, App: ls.App, Host: ls.Host, HostURL: ls.HostURL,
		Event: event, Reason: reason, MemoryMB: ls.MemoryMB, DiskMB: ls.DiskMB, CPUMilli: ls.CPUMilli, HeldSeconds: held}).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("release failed; the host's TTL will free it", "lease", ls.LeaseID, "error", err)
	}
}

// rootMessage is what went wrong, without the wrapping: the message of the
// application error an activity returned, else the innermost error.
func rootMessage(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Message() != "" {
		return ae.Message()
	}
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err.Error()
		}
		err = u.Unwrap()
	}
}
