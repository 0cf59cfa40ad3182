package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/forewarm/forewarm/models/lifecycle/rule"
	"github.com/forewarm/forewarm/store"
)

// Registry is the model registry as publishing uses it (*store.Store).
type Registry interface {
	ChampionSource
	PublishModel(ctx context.Context, m store.ModelRecord) error
	SetModelStatus(ctx context.Context, version, status string) error
}

// StoreCandidate records a trained model in the registry as a candidate:
// every trained model is kept, published or not.
func StoreCandidate(ctx context.Context, reg Registry, version, kind, meta string, onnx []byte, metrics map[string]float64) error {
	err := reg.PublishModel(ctx, store.ModelRecord{Version: version, Kind: kind, Created: time.Now().UTC(),
		Metrics: metrics, Status: store.StatusCandidate, Meta: meta, ONNX: onnx})
	if err != nil {
		return fmt.Errorf("store candidate %s: %w", version, err)
	}
	return nil
}

// Publish acts on a decision: a published candidate becomes its kind's
// champion (the registry retires the previous one); otherwise nothing
// changes. It returns the status the candidate ends with.
func Publish(ctx context.Context, reg Registry, version string, d rule.Decision) (string, error) {
	if !d.Publish {
		return store.StatusCandidate, nil
	}
	if err := Promote(ctx, reg, version); err != nil {
		return "", err
	}
	return store.StatusChampion, nil
}

// Promote makes a stored candidate its kind's champion: the step after a
// decision to publish (the training workflow decides in workflow code and
// promotes through an activity).
func Promote(ctx context.Context, reg Registry, version string) error {
	if err := reg.SetModelStatus(ctx, version, store.StatusChampion); err != nil {
		return fmt.Errorf("publish %s: %w", version, err)
	}
	return nil
}
