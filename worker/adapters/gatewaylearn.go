package adapters

import (
	"context"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/worker/resident"
)

// GatewayLearnStore is the store as the gateway learner uses it
// (resident.GatewayLearnStore).
type GatewayLearnStore struct{ *store.Store }

// Profiles are the stored application profiles by ID, as the loops and
// the ranking take them (without defaults: the learner fills them).
func (g GatewayLearnStore) Profiles(ctx context.Context) (map[string]wire.AppProfile, error) {
	ps, err := g.AppProfiles(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]wire.AppProfile, len(ps))
	for _, p := range ps {
		out[p.ID] = wire.AppProfile{App: p.ID, MemoryMB: p.MemoryMB, ReadRatio: p.ReadRatio, DurationMS: p.DurationMS, VolumeType: p.VolumeType}
	}
	return out, nil
}

var _ resident.GatewayLearnStore = GatewayLearnStore{}
