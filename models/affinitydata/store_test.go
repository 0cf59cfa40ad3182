package affinitydata_test

import (
	"context"
	"testing"
	"time"

	"github.com/forewarm/forewarm/models/affinitydata"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
)

// On the real store the samples come from both kinds of rows: the request
// workflow's and the gateway's, with the gateway's failure on a known host
// as a failure and its row without a host left out.
func TestSamplesFromTheStore(t *testing.T) {
	s := storetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	if err := s.RegisterHost(ctx, store.Host{ID: "h1", URL: "http://127.0.0.1:1", MemoryMB: 8192, CPUMilli: 4000, Speed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRequests(ctx, []store.Request{{Time: t0, App: "a", Host: "h1", SizeMB: 128, ReadRatio: 0.5, WorkMS: 10, Outcome: records.OutcomeWarm}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordGatewayRequests(ctx, []store.GatewayRequest{
		{Time: t0.Add(time.Second), App: "a", Host: "h1", Outcome: records.GatewayCold, Method: "GET", AppMS: 20, StartMS: 800},
		{Time: t0.Add(2 * time.Second), App: "a", Host: "h1", Outcome: records.GatewayFailed, Method: "POST", Error: "instance died"},
		{Time: t0.Add(3 * time.Second), App: "a", Outcome: records.GatewayFailed, Method: "GET", Error: "no host could start a"},
	}); err != nil {
		t.Fatal(err)
	}
	samples, err := affinitydata.Samples(ctx, s, t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// Usual: the upper median of 10 and 20 ms; the cold request's start is
	// not the host's; the failure scores 0. The gateway's rows take the
	// profile the live rows make: 128 MB, a read ratio of (0.5+1+0+1)/4.
	want := []float64{1, 1, 0}
	if len(samples) != len(want) {
		t.Fatalf("%d samples, want %d: %+v", len(samples), len(want), samples)
	}
	for i, w := range want {
		if samples[i].Target != w {
			t.Errorf("sample %d: target %v, want %v", i, samples[i].Target, w)
		}
	}
	if in := samples[1].Input; in.SizeMB != 128 || in.ReadRatio != 0.625 || in.MemoryMB != 8192 {
		t.Errorf("gateway sample input %+v", in)
	}
}
