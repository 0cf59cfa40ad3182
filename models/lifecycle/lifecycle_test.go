package lifecycle

import (
	"context"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/models/lifecycle/rule"
	"github.com/forewarm/forewarm/models/modelstest"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/trace"
)

// The whole path on the real registry and ONNX Runtime: a first demand
// model is published, the same model trained again is not (it is not 1%
// better than the champion it equals), and both are kept in the registry.
func TestDemandLifecycleOnTheRegistry(t *testing.T) {
	modelstest.InitORT(t)
	st := storetest.New(t)
	ctx := context.Background()
	tr := trace.Synth(trace.SynthOptions{Apps: 16, Days: 2, Seed: 4, Mix: trace.Mix{Timer: 1}})
	from := HeldOutFrom(tr, 0)
	run := func(version string) (rule.Decision, string) {
		t.Helper()
		opt := demand.TrainOptions{Spec: demand.Spec{SeqLen: 32, Hidden: 16}, TrainUntil: from, Epochs: 6, Samples: 6000, Seed: 1, Version: version}
		cand, err := TrainDemand(ctx, tr, opt, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cand.Close()
		cmp, err := CompareDemand(ctx, st, cand, tr, from, true)
		if err != nil {
			t.Fatal(err)
		}
		if cmp.Eval.Points == 0 || len(cmp.Baselines) != 3 || !cmp.HeldOut.From.Equal(from) {
			t.Fatalf("comparison %+v", cmp)
		}
		d := rule.Decide(cmp.Comparison, 0)
		if err := StoreCandidate(ctx, st, version, models.KindDemand, cand.Result.Meta(), cand.ONNX, cmp.CandidateFlat); err != nil {
			t.Fatal(err)
		}
		status, err := Publish(ctx, st, version, d)
		if err != nil {
			t.Fatal(err)
		}
		return d, status
	}
	d1, s1 := run("lc-1")
	if !d1.Publish || s1 != store.StatusChampion {
		t.Fatalf("first model: %+v, %s", d1, s1)
	}
	d2, s2 := run("lc-2")
	if d2.Publish || s2 != store.StatusCandidate || !strings.Contains(d2.Reason, "champion lc-1") {
		t.Fatalf("same model again: %+v, %s", d2, s2)
	}
	if v, err := st.ChampionVersion(ctx, models.KindDemand); err != nil || v != "lc-1" {
		t.Errorf("champion %q, %v", v, err)
	}
}

func TestAffinityLifecycleOnTheRegistry(t *testing.T) {
	st := storetest.New(t)
	ctx := context.Background()
	if _, err := TrainAffinity(ctx, affinity.SynthSamples(rule.MinAffinityOutcomes-1, 1), affinity.TrainOptions{}, false); err == nil ||
		!strings.Contains(err.Error(), "49 usable request outcomes, 50 needed") {
		t.Errorf("too few outcomes: %v", err)
	}
	cand, err := TrainAffinity(ctx, affinity.SynthSamples(800, 1), affinity.TrainOptions{Epochs: 8, Seed: 1, Version: "aff-lc"}, false)
	if err != nil {
		t.Fatal(err)
	}
	cmp, err := CompareAffinity(ctx, st, cand, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cmp.Baselines["heuristic"][rule.AffinityMetric]; !ok || len(cand.HeldOut) != cand.Result.ValN {
		t.Fatalf("comparison %+v", cmp)
	}
	d := rule.Decide(cmp, 0)
	if !d.Publish {
		t.Fatalf("a model trained on 800 synthetic samples does not beat the heuristic: %s", d.Reason)
	}
	if err := StoreCandidate(ctx, st, "aff-lc", models.KindAffinity, cand.Result.Meta(), cand.ONNX, cand.Result.Metrics()); err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(ctx, st, "aff-lc", d); err != nil {
		t.Fatal(err)
	}
	again, err := CompareAffinity(ctx, st, cand, false)
	if err != nil || again.Champion != "aff-lc" || again.ChampionMetrics[rule.AffinityMetric] != cmp.Metrics[rule.AffinityMetric] {
		t.Errorf("the champion scored on the same samples: %+v, %v", again, err)
	}
}
