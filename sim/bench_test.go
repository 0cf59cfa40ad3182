package sim

import (
	"testing"
	"time"

	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/trace"
)

// constForecaster says 0.5 for everyone: the cost of the policy and the
// simulator around the model, not of the model.
type constForecaster struct{}

func (constForecaster) Forecast(_ int, h *History) ([]float64, error) {
	p := make([]float64, len(h.Env().Apps))
	for i := range p {
		p[i] = 0.5
	}
	return p, nil
}

// BenchmarkRun replays one day of 1,000 synthetic apps (1.44 M app-bins)
// through each policy; app-bins/s is reported.
func BenchmarkRun(b *testing.B) {
	tr := trace.Synth(trace.SynthOptions{Apps: 1000, Days: 1, Seed: 1})
	evalStart := tr.Bins * 2 / 3
	for _, c := range []struct {
		name string
		p    func() Policy
	}{
		{"reactive", func() Policy { return Reactive{} }},
		{"keepalive", func() Policy { return NewKeepAlive(10 * time.Minute) }},
		{"perapp-keepalive", func() Policy { return NewPerAppKeepAlive(0.022, policy.Default().ReferenceMB, DefaultKeepAlives) }},
		{"histogram", func() Policy { return NewHistogram() }},
		{"ours", func() Policy { return NewOurs(NewForecastCache(constForecaster{}), policy.Default()) }},
		{"oracle", func() Policy { return &Oracle{} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Run(tr, c.p(), Options{Range: Range{evalStart, tr.Bins}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(tr.Apps)*tr.Bins)*float64(b.N)/b.Elapsed().Seconds(), "app-bins/s")
		})
	}
}

// BenchmarkPerAppKeepAlive replays 3 days of 300 synthetic apps through the
// per-application keep-alive, counting the last third: its bookkeeping and
// re-choosing must stay cheap next to the replay itself.
func BenchmarkPerAppKeepAlive(b *testing.B) {
	tr := trace.Synth(trace.SynthOptions{Apps: 300, Days: 3, Seed: 1})
	rg := Range{tr.Bins * 2 / 3, tr.Bins}
	for b.Loop() {
		p := NewPerAppKeepAlive(0.022, policy.Default().ReferenceMB, DefaultKeepAlives)
		if _, err := Run(tr, p, Options{Range: rg}); err != nil {
			b.Fatal(err)
		}
	}
}
