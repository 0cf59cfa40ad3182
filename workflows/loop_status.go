package workflows

// What the loop shows: its state query, search attributes and the Web
// UI's current details.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/policy"
)

// attrState is what was last upserted, so search attributes are written
// only when they change (each upsert is a history event).
type attrState struct {
	state, model, host string
	threshold          float64
	set                bool
}

func (l *loop) state() string {
	switch {
	case l.LastDecision == LoopStateStopped:
		return LoopStateStopped
	case l.Policy.Paused:
		return LoopStatePaused
	case l.Policy.DryRun:
		return LoopStateDryRun
	}
	return LoopStateRunning
}

// upsertAttrs writes the search attributes that changed.
func (l *loop) upsertAttrs(ctx workflow.Context) {
	cur := attrState{state: l.state(), model: l.ModelVersion, threshold: l.Policy.Threshold, set: true}
	if len(l.Leases) > 0 {
		cur.host = l.Leases[0].Host
	}
	if cur == l.attrs {
		return
	}
	var ups []temporal.SearchAttributeUpdate
	if !l.attrs.set {
		ups = append(ups, AttrApp.ValueSet(l.App))
	}
	if !l.attrs.set || cur.state != l.attrs.state {
		ups = append(ups, AttrLoopState.ValueSet(cur.state))
	}
	if !l.attrs.set || cur.threshold != l.attrs.threshold {
		ups = append(ups, AttrThreshold.ValueSet(cur.threshold))
	}
	if cur.model != l.attrs.model && cur.model != "" {
		ups = append(ups, AttrModelVersion.ValueSet(cur.model))
	}
	if cur.host != l.attrs.host {
		if cur.host == "" {
			ups = append(ups, AttrHost.ValueUnset())
		} else {
			ups = append(ups, AttrHost.ValueSet(cur.host))
		}
	}
	l.attrs = cur
	if len(ups) == 0 {
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, ups...); err != nil {
		l.log.Warn("upsert search attributes", "error", err)
	}
}

// setDetails is the Web UI's one-glance view of the loop: its page's
// "User Metadata" tab shows it as Current Details (the UI reads it with
// the __temporal_workflow_metadata query when the tab opens, so a worker
// must be polling the loop's queue). The first paragraph is the summary:
// state, the last probability against the thresholds, the leases and the
// next wake; the counters and the last error follow.
func (l *loop) setDetails(ctx workflow.Context) {
	var b strings.Builder
	th := l.thresholds()
	fmt.Fprintf(&b, "**%s** is %s: last P = %.3f against keep ≥ %.3g and prepare ≥ %.3g (threshold %.3g for a %.0f MB instance) → %s",
		l.App, l.state(), l.LastProbability, th.Keep, th.Prepare, l.Policy.Threshold, l.leaseSizeMB(), orDash(l.LastDecision))
	fmt.Fprintf(&b, "; %d lease(s) live", len(l.Leases))
	for _, ls := range l.Leases {
		fmt.Fprintf(&b, " (%s until %s, score %s)", ls.Host, ls.Expires.UTC().Format("15:04:05"), ls.Parts())
	}
	if l.preparing != "" {
		fmt.Fprintf(&b, ", preparing %s", l.preparing)
	}
	if !l.NextWake.IsZero() {
		fmt.Fprintf(&b, "; next wake %s UTC: %s", l.NextWake.UTC().Format("15:04:05"), orDash(l.WakeReason))
	}
	if l.Router {
		fmt.Fprintf(&b, "; arrivals recorded by the router, woken early %d times", l.Stats.Woken)
	}
	fmt.Fprintf(&b, "; model %s.", orDash(l.ModelVersion))
	fmt.Fprintf(&b, "\n\nwakes %d, preparations %d (%d failed), claims %d, cold %d, expired %d",
		l.Stats.Wakes, l.Stats.Preparations, l.Stats.PreparationsFailed, l.Stats.Claims, l.Stats.Misses, l.Stats.Expired)
	if l.LastError != "" {
		fmt.Fprintf(&b, "\n\nlast error: %s", l.LastError)
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func (l *loop) status() LoopStatus {
	st := LoopStatus{
		App: l.App, State: l.state(), Bin: l.Bin, Policy: l.Policy, Profile: l.Profile,
		Recent: slices.Clone(l.Recent), Pending: l.Pending, BinEnd: l.BinEnd,
		LastProbability: l.LastProbability, LastDecision: l.LastDecision, ModelVersion: l.ModelVersion,
		LastError: l.LastError, Leases: slices.Clone(l.Leases), Preparing: l.preparing,
		Adjustments: maps.Clone(l.Adjustments), Stats: l.Stats, Runs: l.Runs,
		Holding: l.Holding, NextWake: l.NextWake, WakeReason: l.WakeReason, Router: l.Router,
		LeaseSizeMB: l.leaseSizeMB(), Thresholds: l.thresholds(),
	}
	return st
}

// thresholds are the application's effective thresholds under the policy,
// for an instance of the lease size, on the model's bin width.
func (l *loop) thresholds() policy.Thresholds {
	_, bin := l.Clock.Map(time.Time{}, l.Bin)
	return l.Policy.Config().For(policy.App{MemoryMB: l.leaseSizeMB()}, bin)
}

// leaseSizeMB sizes the application's instance from its recent requests.
func (l *loop) leaseSizeMB() float64 {
	return l.Policy.Config().LeaseSizeMB(l.Sizes, l.Profile.MemoryMB)
}
