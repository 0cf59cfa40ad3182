package keda

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/trace"
)

// TestScalerActiveABinBeforeEachPredictedRequest replays real applications
// of the Azure 2019 sample bin by bin on a fake clock. Each bin's decision
// is package policy's (policy.Config.Decide, as the loop and the simulator
// take it), with the loop's preparation planned one bin ahead (its largest
// lead); the leases go through the activities (activities.Hosts) over this
// package's pseudo host driver into the registry, and at every bin
// boundary KEDA's own client asks the real gRPC scaler. A KEDA-like stream
// client stays subscribed the whole time, as KEDA's external-push trigger
// does, so each preparation's shadow passes only once the scaler has told
// it.
//
// The forecast is a clairvoyant stand-in for the demand model (the chance
// of a request is high in the bins that have one): what is tested is that
// whatever the policy prepares for, KEDA hears of a bin ahead, not how good
// the model is.
func TestScalerActiveABinBeforeEachPredictedRequest(t *testing.T) {
	dir := filepath.Join("..", "testdata", "azure2019-sample")
	tr, err := trace.ReadAzure2019(filepath.Join(dir, "1350_inv.csv"), trace.AzureOptions{MemoryPath: filepath.Join(dir, "1350_mem.csv")})
	require.NoError(t, err)
	const from, to, window = 900, 1140, 60
	cfg := policy.Default()

	// Sparse applications: a few requests with idle stretches between
	// them, so the policy prepares, keeps and releases.
	var apps []int
	for i, a := range tr.Apps {
		n := 0
		for _, c := range a.Counts[from-window : to] {
			if c > 0 {
				n++
			}
		}
		if n >= 12 && n <= 40 {
			apps = append(apps, i)
		}
		if len(apps) == 3 {
			break
		}
	}
	require.NotEmpty(t, apps, "no sparse application in the sample")

	totals := map[string]int{}
	for _, i := range apps {
		got := replayOne(t, tr, i, from, to, window, cfg)
		for k, v := range got {
			totals[k] += v
		}
	}
	t.Logf("over %d apps × %d bins: %v", len(apps), to-from, totals)
	require.GreaterOrEqual(t, totals["predicted requests"], 3, "too few predicted requests for the test to mean much")
	require.GreaterOrEqual(t, totals["releases"], 3, "too few releases for the test to mean much")
}

func replayOne(t *testing.T, tr *trace.Trace, i, from, to, window int, cfg policy.Config) map[string]int {
	a := tr.Apps[i]
	bin := tr.Bin
	clk := newFakeClock()
	clk.t = tr.BinStart(from)
	reg := NewRegistry(clk.Now)
	c := startScaler(t, reg)
	hosts := &activities.Hosts{Directory: Directory{}, Clients: &Clients{Reg: reg}}
	live, err := hosts.Directory.LiveHosts(context.Background())
	require.NoError(t, err)
	cand := wire.HostCandidate{Host: live[0].ID, URL: live[0].URL, Score: 1, FreeMemMB: live[0].FreeMemMB}

	// KEDA's external-push trigger: one stream for the app, drained.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.StreamIsActive(ctx, ref(a.ID))
	require.NoError(t, err)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()

	counts := make([]float64, tr.Bins)
	for b, n := range a.Counts {
		counts[b] = float64(n)
	}
	path := func(b int) []float64 { // the clairvoyant stand-in
		p := make([]float64, cfg.LookaheadBins)
		for j := range p {
			p[j] = 0.001
			if b+j < len(counts) && counts[b+j] > 0 {
				p[j] = 0.9
			}
		}
		return p
	}
	app := policy.App{MemoryMB: a.MemoryMB}
	maxHold := cfg.LookaheadBins
	grace := bin / 2
	lease, leaseN := "", 0
	aheadFor := map[int]bool{} // bins prepared for one bin ahead
	type answer struct {
		active bool
		metric int64
	}
	asked := map[int]answer{}
	out := map[string]int{}

	reserve := func(b, hold int) {
		leaseN++
		lease = a.ID + "." + time.Duration(leaseN).String()
		ttl := tr.BinStart(b + hold).Add(grace).Sub(clk.Now())
		_, err := hosts.Reserve(ctx, wire.ReserveInput{LeaseID: lease, App: a.ID, Candidate: cand, MemoryMB: a.MemoryMB, TTL: ttl})
		require.NoError(t, err)
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		sr, err := hosts.Shadow(sctx, wire.ShadowInput{LeaseID: lease, App: a.ID, Host: cand.Host, HostURL: cand.URL, MaxMS: 500})
		require.NoError(t, err)
		require.True(t, sr.OK, "shadow of %s: %s", lease, sr.Reason)
		out["preparations"]++
	}
	for b := from; b < to; b++ {
		clk.t = tr.BinStart(b)
		st := reg.State(a.ID)
		held := st.Live > 0
		if !held {
			lease = "" // lapsed
		}
		s := policy.Situation{App: app, Held: held, Activity: policy.ActivityOf(counts[b-window : b]), Path: path(b)}
		plan := cfg.Decide(s, bin, maxHold)
		switch plan.Action {
		case policy.Release:
			res, err := hosts.Release(ctx, wire.ReleaseInput{LeaseID: lease, App: a.ID, Host: cand.Host, HostURL: cand.URL})
			require.NoError(t, err)
			require.True(t, res.WasHeld)
			lease = ""
			out["releases"]++
		case policy.Keep:
			ttl := tr.BinStart(b + plan.HoldBins).Add(grace).Sub(clk.Now())
			res, err := hosts.Extend(ctx, wire.ExtendInput{LeaseID: lease, App: a.ID, Host: cand.Host, HostURL: cand.URL, TTL: ttl})
			require.NoError(t, err)
			require.True(t, res.Extended, "extend %s: %s", lease, res.Reason)
		case policy.Prepare:
			reserve(b, plan.HoldBins) // not foreseen a bin ahead (e.g. after a cold request)
			out["late preparations"]++
		}
		// The loop's plan ahead: the next bin along the no-request path.
		if !plan.Action.Holds() {
			next := s.After(1)
			next.Held = false
			if p := cfg.Decide(next, bin, maxHold); p.Action == policy.Prepare {
				reserve(b, 1+p.HoldBins)
				aheadFor[b+1] = true
			}
		}
		act, err := c.IsActive(ctx, ref(a.ID))
		require.NoError(t, err)
		m, err := c.GetMetrics(ctx, &externalscaler.GetMetricsRequest{ScaledObjectRef: ref(a.ID), MetricName: MetricName(a.ID)})
		require.NoError(t, err)
		asked[b] = answer{act.Result, m.MetricValues[0].MetricValue}
		// What the scaler says is what the loop holds, every bin.
		require.Equal(t, lease != "", act.Result, "bin %d: lease %q", b, lease)
		if plan.Action == policy.Release && !aheadFor[b+1] {
			require.False(t, act.Result, "bin %d: active after its release", b)
			require.Zero(t, m.MetricValues[0].MetricValue)
		}
	}
	for b := range aheadFor {
		if b >= to {
			continue
		}
		require.True(t, asked[b-1].active, "bin %d was prepared for, but the scaler was not active a bin before", b)
		require.GreaterOrEqual(t, asked[b-1].metric, int64(1))
		require.True(t, asked[b].active, "bin %d was prepared for, but the scaler was not active as it began", b)
		if counts[b] > 0 {
			out["predicted requests"]++
		}
	}
	cancel()
	return out
}
