package resident

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/models/affinity/score"
	"github.com/forewarm/forewarm/store/records"
)

// GatewayLearnerName names the gateway learner's passes in the store.
const GatewayLearnerName = "gateway"

// GatewayLearnStore is what the gateway learner reads and writes (the
// store's methods of the same names; Profiles adapts AppProfiles).
type GatewayLearnStore interface {
	LastAdjustmentPass(ctx context.Context, learner string) (records.AdjustmentPass, bool, error)
	RecordAdjustmentPass(ctx context.Context, p records.AdjustmentPass) error
	ApplyAdjustmentPass(ctx context.Context, p records.AdjustmentPass) (int, error)
	FirstGatewayRequests(ctx context.Context, from, to time.Time, limit int) ([]records.GatewayRequest, error)
	GatewayUsualMS(ctx context.Context, apps []string, from, to time.Time) (map[string]float64, error)
	Adjustments(ctx context.Context) (map[[2]string]float64, error)
	Profiles(ctx context.Context) (map[string]wire.AppProfile, error)
}

// AdjustmentNotifier tells an application's loop of a host's new
// adjustment (a loop reads the stored ones only when it seeds). A loop
// that does not run is no error.
type AdjustmentNotifier interface {
	Adjusted(ctx context.Context, app, host string, adjustment float64, why string) error
}

// GatewayLearner moves the (application, host) affinity adjustments from
// the gateway's requests, as a served request's workflow does from its
// own (score.NextAdjustment), in passes over the recorded rows:
//
//   - expected: the affinity model's score of the host for the
//     application's profile now, plus the pair's adjustment so far (what
//     RankHosts ranks by);
//   - actual: the request's performance score on the model's scale,
//     affinity.Target(usual, app_ms), usual being the application's upper
//     median app_ms over UsualWindow; a failed request scores 0. The
//     instance's own time, so a cold start (warmth, not the host) counts
//     for nothing;
//   - rows without a host, on a host that is not live (no model score),
//     or without a measured time teach nothing.
//
// Each pass is recorded (records.AdjustmentPass) before its adjustments
// are written, and the next starts where it ended: across restarts every
// row is learned from once. Only one learner may run per store: two would
// each apply the same rows.
type GatewayLearner struct {
	Store     GatewayLearnStore
	Directory activities.HostDirectory
	Affinity  activities.AffinityScorer
	Loops     AdjustmentNotifier // nil: loops learn the adjustments when they next seed
	Log       *slog.Logger
	// Tolerance and Rate are NextAdjustment's (defaults 0.15 and 0.5, a
	// served request's).
	Tolerance, Rate float64
	// Settle is how old a row must be before a pass reads it (default 1
	// min): the gateway writes in batches, and a row written after a pass
	// went past its time is never read.
	Settle time.Duration
	// Lookback is how far back the first pass reads (default 1 h).
	Lookback time.Duration
	// UsualWindow is the span an application's usual time is taken over
	// (default 24 h).
	UsualWindow time.Duration
	// MaxRows bounds the rows of one pass (default 20 000); a backlog
	// takes several.
	MaxRows int

	notified bool                    // the last pass's adjustments were told to the loops since the process began
	recorded *records.AdjustmentPass // the last pass this learner recorded
}

// GatewayPassResult says what one pass did.
type GatewayPassResult struct {
	From, To    time.Time
	Rows        int // gateway rows read
	Learned     int // rows that had an expected and an actual score
	Adjustments int // adjustments recorded
	Finished    int // adjustments of an interrupted pass written now
}

// Run makes a pass every every until ctx ends; a failed pass is logged and
// the next one tries again from the same place.
func (g *GatewayLearner) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		res, err := g.Pass(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			g.log().Warn("gateway learning pass failed; the next one retries it", "err", err)
		case res.Rows > 0 || res.Finished > 0:
			g.log().Info("gateway learning pass", "from", res.From, "to", res.To, "rows", res.Rows, "learned", res.Learned,
				"adjustments", res.Adjustments, "finished", res.Finished)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass finishes the last recorded pass if it was interrupted, then learns
// from the rows recorded since it ended, up to now - Settle.
func (g *GatewayLearner) Pass(ctx context.Context, now time.Time) (GatewayPassResult, error) {
	var res GatewayPassResult
	last, ok, err := g.Store.LastAdjustmentPass(ctx, GatewayLearnerName)
	if err != nil {
		return res, err
	}
	if r := g.recorded; r != nil && (!ok || last.To.Before(r.To)) {
		// A replica behind the one that took the write: this learner's
		// own last pass is the later one.
		last, ok = *r, true
	}
	res.To = now.Add(-orDefault(g.Settle, time.Minute))
	res.From = res.To.Add(-orDefault(g.Lookback, time.Hour))
	at := now.Truncate(time.Second)
	if ok {
		if res.Finished, err = g.finish(ctx, last); err != nil {
			return res, err
		}
		res.From = last.To
		// Stamps apart from the last pass's, so each pass's are its own.
		if next := last.At.Add(time.Second); at.Before(next) {
			at = next
		}
	}
	if !res.To.After(res.From) {
		return res, nil
	}
	limit := g.MaxRows
	if limit <= 0 {
		limit = 20_000
	}
	rows, err := g.Store.FirstGatewayRequests(ctx, res.From, res.To, limit)
	if err != nil {
		return res, err
	}
	if len(rows) == 0 {
		// Nothing to record: the next pass reads from the same place.
		return res, nil
	}
	if len(rows) == limit {
		rows, res.To = trimPass(rows)
	}
	res.Rows = len(rows)
	adj, learned, err := g.learn(ctx, rows, res.To)
	if err != nil {
		return res, err
	}
	res.Learned, res.Adjustments = learned, len(adj)
	for i := range adj {
		adj[i].Time = at.Add(time.Duration(i))
	}
	p := records.AdjustmentPass{Learner: GatewayLearnerName, From: res.From, To: res.To, At: at, Rows: len(rows), Adjustments: adj}
	if err := g.Store.RecordAdjustmentPass(ctx, p); err != nil {
		return res, err
	}
	g.recorded = &p
	if _, err := g.finish(ctx, p); err != nil {
		return res, err
	}
	return res, nil
}

// trimPass ends a full pass before its last instant, whose rows may go
// on past the limit: they start the next pass. A pass of one instant
// keeps it all.
func trimPass(rows []records.GatewayRequest) ([]records.GatewayRequest, time.Time) {
	last := rows[len(rows)-1].Time
	i := len(rows)
	for i > 0 && rows[i-1].Time.Equal(last) {
		i--
	}
	if i == 0 {
		return rows, last.Add(time.Nanosecond)
	}
	return rows[:i], last
}

// finish writes what of a recorded pass has not landed and tells the
// loops its adjustments, when it wrote some or they were not told since
// the process began.
func (g *GatewayLearner) finish(ctx context.Context, p records.AdjustmentPass) (int, error) {
	n, err := g.Store.ApplyAdjustmentPass(ctx, p)
	if err != nil {
		return 0, err
	}
	if n > 0 || !g.notified {
		g.notify(ctx, p)
		g.notified = true
	}
	return n, nil
}

// notify tells each loop the last adjustment of each of its hosts in p.
// A failure is logged: the loop still reads the stored ones when it seeds.
func (g *GatewayLearner) notify(ctx context.Context, p records.AdjustmentPass) {
	if g.Loops == nil {
		return
	}
	final := map[[2]string]float64{}
	var order [][2]string
	for _, a := range p.Adjustments {
		k := [2]string{a.App, a.Host}
		if _, seen := final[k]; !seen {
			order = append(order, k)
		}
		final[k] = a.NewAdjustment
	}
	why := fmt.Sprintf("gateway pass %s", p.To.UTC().Format(time.RFC3339Nano))
	for _, k := range order {
		if err := g.Loops.Adjusted(ctx, k[0], k[1], final[k], why); err != nil {
			g.log().Warn("could not tell the loop of an adjustment; it reads it when it next seeds", "app", k[0], "host", k[1], "err", err)
		}
	}
}

// learn folds rows, in order, into the current adjustments; it returns
// the adjustments that moved (unstamped) and how many rows taught
// something.
func (g *GatewayLearner) learn(ctx context.Context, rows []records.GatewayRequest, to time.Time) ([]records.Adjustment, int, error) {
	apps := map[string][]string{} // app -> its hosts, in order of first row
	count := map[string]int{}
	var appList []string
	for _, r := range rows {
		if r.Host == "" {
			continue
		}
		if _, ok := apps[r.App]; !ok {
			appList = append(appList, r.App)
		}
		if !slices.Contains(apps[r.App], r.Host) {
			apps[r.App] = append(apps[r.App], r.Host)
		}
		count[r.App]++
	}
	if len(appList) == 0 {
		return nil, 0, nil
	}
	usual, err := g.Store.GatewayUsualMS(ctx, appList, to.Add(-orDefault(g.UsualWindow, 24*time.Hour)), to)
	if err != nil {
		return nil, 0, err
	}
	model, err := g.modelScores(ctx, apps, appList, count, rows)
	if err != nil {
		return nil, 0, err
	}
	state, err := g.Store.Adjustments(ctx)
	if err != nil {
		return nil, 0, err
	}
	tol, rate := orDefaultF(g.Tolerance, 0.15), orDefaultF(g.Rate, 0.5)
	var out []records.Adjustment
	learned := 0
	for _, r := range rows {
		k := [2]string{r.App, r.Host}
		m, scored := model[k]
		actual, measured := gatewayActual(r, usual[r.App])
		if !scored || !measured {
			continue
		}
		learned++
		old := state[k]
		expected := score.Combine(m, old).Score
		next, ok := score.NextAdjustment(old, expected, actual, tol, rate)
		if !ok {
			continue
		}
		state[k] = next
		out = append(out, records.Adjustment{App: r.App, Host: r.Host, Expected: expected, Actual: actual, Delta: actual - expected,
			NewAdjustment: next, Reason: fmt.Sprintf("gateway request %s (%s): actual %.3f vs expected %.3f beyond tolerance %.2f",
				r.RequestID, r.Outcome, actual, expected, tol)})
	}
	return out, learned, nil
}

// gatewayActual is a gateway request's performance score on the affinity
// scale; measured is false when the row says nothing of its host.
func gatewayActual(r records.GatewayRequest, usualMS float64) (actual float64, measured bool) {
	switch {
	case r.Host == "":
		return 0, false
	case r.Outcome == records.GatewayFailed:
		return 0, true
	case r.AppMS <= 0 || usualMS <= 0:
		return 0, false
	}
	return affinity.Target(usualMS, r.AppMS), true
}

// modelScores asks the affinity model, once per application, for the
// live hosts its rows ran on; hosts no longer live are left out.
func (g *GatewayLearner) modelScores(ctx context.Context, apps map[string][]string, appList []string, count map[string]int,
	rows []records.GatewayRequest) (map[[2]string]float64, error) {
	live, err := g.Directory.LiveHosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list live hosts: %w", err)
	}
	byID := make(map[string]activities.HostInfo, len(live))
	for _, h := range live {
		byID[h.ID] = h
	}
	profiles, err := g.Store.Profiles(ctx)
	if err != nil {
		return nil, err
	}
	minutes := max(rows[len(rows)-1].Time.Sub(rows[0].Time).Minutes(), 1)
	out := map[[2]string]float64{}
	for _, app := range appList {
		var hosts []activities.HostInfo
		for _, id := range apps[app] {
			if h, ok := byID[id]; ok {
				hosts = append(hosts, h)
			}
		}
		if len(hosts) == 0 {
			continue
		}
		p := profiles[app]
		p.App, p.RatePerMin = app, float64(count[app])/minutes
		scores, _, err := g.Affinity.Score(ctx, p.WithDefaults(), hosts)
		if err != nil {
			return nil, fmt.Errorf("affinity scores for %s: %w", app, err)
		}
		for i, h := range hosts {
			out[[2]string{app, h.ID}] = scores[i]
		}
	}
	return out, nil
}

func (g *GatewayLearner) log() *slog.Logger {
	if g.Log == nil {
		return slog.Default()
	}
	return g.Log
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func orDefaultF(x, def float64) float64 {
	if x <= 0 {
		return def
	}
	return x
}
