package demand

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/forewarm/forewarm/trace"
)

var azure struct {
	once sync.Once
	tr   *trace.Trace
	err  error
}

// azureSample loads the shared one-day Azure Functions sample once per test binary.
func azureSample(t testing.TB) *trace.Trace {
	t.Helper()
	azure.once.Do(func() {
		dir := filepath.Join("..", "..", "testdata", "azure2019-sample") // the copy in the repository
		if d := os.Getenv("FOREWARM_AZURE_SAMPLE"); d != "" {
			dir = d
		}
		azure.tr, azure.err = trace.ReadAzure2019(filepath.Join(dir, "1350_inv.csv"), trace.AzureOptions{
			MemoryPath: filepath.Join(dir, "1350_mem.csv"), DurationsPath: filepath.Join(dir, "1350_run.csv")})
	})
	if azure.err != nil {
		t.Fatalf("the shared Azure sample: %v", azure.err)
	}
	return azure.tr
}

func TestBaselinesReproduceKnownAUC(t *testing.T) {
	tr := azureSample(t)
	ev, err := Evaluate(context.Background(), tr, nil, EvalOptions{From: tr.BinStart(960), Horizon: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("points %d from %s to %s", ev.Points, ev.From, ev.To)
	if ev.Points != 1350*476 {
		t.Errorf("points = %d, want 1350 apps x 476 bins (minutes 960..1435)", ev.Points)
	}
	// The figures the issue quotes for this sample.
	want := map[string]float64{BaselineLastBin: 0.770, BaselineFraction: 0.942, BaselineRecency: 0.9725}
	for k, w := range want {
		m := ev.Baselines[k]
		t.Logf("%-20s AUC %.4f log loss %.4f Brier %.4f ECE %.4f", k, m.AUC, m.LogLoss, m.Brier, m.ECE)
		if d := m.AUC - w; d < -0.0015 || d > 0.0015 {
			t.Errorf("%s ROC AUC = %.4f, want %.4f +- 0.0015", k, m.AUC, w)
		}
	}
}
