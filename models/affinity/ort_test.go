//go:build cgo

package affinity

import (
	"math"
	"testing"

	"github.com/forewarm/forewarm/models/modelstest"
)

func TestORTAffinityMatchesGo(t *testing.T) {
	modelstest.InitORT(t)
	res, samples := trainSynthAffinity(t)
	b, err := res.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	o, err := Load(b, res.Meta(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer o.(interface{ Close() error }).Close()
	in := make([]Input, 64)
	for i := range in {
		in[i] = samples[i].Input
	}
	for _, n := range []int{1, 64} {
		got, err := o.Score(in[:n])
		if err != nil {
			t.Fatal(err)
		}
		want, _ := res.Model().Score(in[:n])
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-5 {
				t.Errorf("batch %d item %d: ORT %.7f, Go %.7f", n, i, got[i], want[i])
			}
		}
	}
}
