//go:build cgo

package demand

import (
	"errors"
	"math"
	"testing"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/modelstest"
)

func TestORTMatchesGoForward(t *testing.T) {
	modelstest.InitORT(t)
	res, in := randomDemand(t, 32, 11)
	b, err := res.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	ortModel, err := Load(b, res.Meta(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer ortModel.(interface{ Close() error }).Close()
	goModel, err := Load(b, res.Meta(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 64} {
		po, err := ortModel.Predict(in[:n])
		if err != nil {
			t.Fatal(err)
		}
		pg, err := goModel.Predict(in[:n])
		if err != nil {
			t.Fatal(err)
		}
		var worst float64
		for i := range po {
			worst = math.Max(worst, math.Abs(po[i]-pg[i]))
		}
		t.Logf("batch %d: max |ORT - Go| = %.2g (p[0]=%.4f)", n, worst, po[0])
		if worst > 1e-5 {
			t.Errorf("batch %d: ONNX Runtime and the Go forward pass differ by %g > 1e-5", n, worst)
		}
	}
}

func TestORTRefusesBadInput(t *testing.T) {
	modelstest.InitORT(t)
	res, in := randomDemand(t, 8, 12)
	b, _ := res.ONNX()
	d, err := Load(b, "", true)
	if err != nil {
		t.Fatal(err)
	}
	bad := in[0]
	bad.Counts = append([]float64(nil), bad.Counts...)
	bad.Counts[3] = math.NaN()
	if _, err := d.Predict([]Input{in[1], bad}); err == nil {
		t.Fatal("NaN count accepted")
	} else {
		var ie *models.InputError
		if !errors.As(err, &ie) || ie.Index != 1 || ie.Field != "Counts" {
			t.Errorf("error %v does not name input 1's Counts", err)
		}
	}
	enc := d.(interface {
		PredictEncoded([]float32, int) ([]float64, error)
	})
	if _, err := enc.PredictEncoded(make([]float32, 10), 1); err == nil {
		t.Fatal("wrong sequence length accepted")
	}
}
