package activities

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/policy"
)

// A loop that may sleep a day of two-minute bins (--max-sleep-bins 1440)
// holding an instance: its lease is planned no further than a host agent
// accepts (api.MaxTTL, with the lease's grace and lead), and the loop
// wakes to extend it then, rather than asking for a lease every host
// refuses.
func TestForecastPlansNoLeaseBeyondWhatAnAgentAccepts(t *testing.T) {
	bin := 2 * time.Minute
	fits := int(api.MaxTTL/bin) - 2 // 718
	p := &Predictor{Models: oneRegistry{lastCountModel{"v1"}}}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetDataConverter(payload.Converter())
	env.RegisterActivity(p)
	cfg := policy.Default()
	cfg.Objective, cfg.TrustGaps = policy.PerRequest, 0 // the forecast decides
	for _, c := range []struct {
		name   string
		policy *policy.Config
	}{{"expected-value rule", nil}, {"policy.Config.Decide", &cfg}} {
		t.Run(c.name, func(t *testing.T) {
			in := wire.ForecastInput{App: "a", Counts: []float64{0, 0, 1}, Next: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Bin: bin,
				Bins: 1440, Held: true, Lookahead: 10, MaxSleep: 1440, Policy: c.policy, MemoryMB: 64,
				Thresholds: policy.Thresholds{Keep: 0.5, Prepare: 0.6}}
			v, err := env.ExecuteActivity(p.Forecast, in)
			require.NoError(t, err)
			var res wire.ForecastResult
			require.NoError(t, v.Get(&res))
			require.True(t, res.Action.Holds(), "P=0.9 along the path: held")
			require.Equal(t, fits, res.HoldBins, "the hold is planned as far as a lease may live, not 1440 bins (48 h)")
			require.LessOrEqual(t, time.Duration(res.HoldBins+2)*bin, api.MaxTTL)
			require.Equal(t, fits, res.NextChange, "the loop wakes to extend the lease before it ends")
			require.Equal(t, wire.UntilHold, res.Until)
		})
	}
}

// lastCountModel answers 0.9 divided by the last bin's requests (0.9 when
// it saw none).
type lastCountModel struct{ v string }

func (m lastCountModel) Predict(in []DemandQuery) ([]float64, error) {
	out := make([]float64, len(in))
	for i, q := range in {
		out[i] = 0.9 / max(1, q.Counts[len(q.Counts)-1])
	}
	return out, nil
}
func (m lastCountModel) Version() string  { return m.v }
func (m lastCountModel) HistoryBins() int { return 8 }
func (m lastCountModel) HorizonBins() int { return 1 }

type oneRegistry struct{ m DemandModel }

func (r oneRegistry) ChampionVersion(context.Context) (string, error) { return r.m.Version(), nil }
func (r oneRegistry) LoadDemand(context.Context, string) (DemandModel, error) {
	return r.m, nil
}
