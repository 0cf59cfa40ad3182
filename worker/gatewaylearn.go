package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/worker/adapters"
	"github.com/forewarm/forewarm/worker/resident"
	"github.com/forewarm/forewarm/workflows"
)

// loopAdjuster tells a loop of a host's new adjustment with the
// observation a served request sends, marked claimed so it counts no
// arrival.
type loopAdjuster struct{ c client.Client }

func (a loopAdjuster) Adjusted(ctx context.Context, app, host string, adjustment float64, why string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := a.c.SignalWorkflow(ctx, workflows.LoopWorkflowID(app), "", workflows.SignalObservation,
		workflows.ObservationSignal{RequestID: why, Claimed: true, Host: host, Adjustment: &adjustment})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil // no loop for this application: it reads the adjustment when it starts
	}
	return err
}

// startGatewayLearner runs the gateway learner every s.GatewayLearnEvery
// until the returned function is called.
func startGatewayLearner(s settings, c client.Client, st *store.Store, directory activities.HostDirectory, logger *slog.Logger) context.CancelFunc {
	scorer := &adapters.AffinityScorer{Src: st, UseORT: s.UseORT, CheckEvery: s.ModelCheck, Log: logger, Metrics: s.metrics}
	l := &resident.GatewayLearner{Store: adapters.GatewayLearnStore{Store: st}, Directory: directory, Affinity: scorer,
		Loops: loopAdjuster{c}, Log: logger.With("part", "gateway-learner")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx, s.GatewayLearnEvery)
	}()
	return func() {
		cancel()
		<-done
	}
}
