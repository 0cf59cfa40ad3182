package affinitydata

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/trace"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func TestJoin(t *testing.T) {
	hosts := []store.Host{{ID: "h1", MemoryMB: 8192, DiskMB: 1000, CPUMilli: 4000, Speed: 1.2}}
	metrics := []store.HostMetrics{
		{Time: t0.Add(-time.Minute), HostID: "h1", CPUUtil: 0.3, MemPressure: 0.1, IOLatencyMS: 4, MemAvailMB: 5000},
		{Time: t0.Add(30 * time.Second), HostID: "h1", CPUUtil: 0.9, MemAvailMB: 100},
	}
	reqs := []store.Request{
		{Time: t0.Add(40 * time.Second), App: "a", Host: "h1", WorkMS: 200, LatencyMS: 900, Outcome: records.OutcomeCold},
		{Time: t0, App: "a", Host: "h1", SizeMB: 128, ReadRatio: 0.7, VolumeType: "ssd", WorkMS: 100, LatencyMS: 120, Outcome: records.OutcomeWarm},
		{Time: t0.Add(time.Hour), App: "a", Host: "h1", WorkMS: 100, Outcome: records.OutcomeWarm},         // metrics too old
		{Time: t0.Add(2 * time.Minute), App: "a", Host: "gone", WorkMS: 100, Outcome: records.OutcomeWarm}, // unknown host
	}
	obs := Join(FromRequests(reqs), hosts, metrics)
	if len(obs) != 3 {
		t.Fatalf("%d observations, want 3 (unknown host skipped): %+v", len(obs), obs)
	}
	first := obs[0]
	if first.Input.CPUUtil != 0.3 || first.Input.FreeMemMB != 5000 || first.Input.Speed != 1.2 || first.Input.SizeMB != 128 || first.LatencyMS != 100 {
		t.Errorf("first request joined to the wrong metrics or fields: %+v", first)
	}
	if obs[1].Input.CPUUtil != 0.9 || obs[1].LatencyMS != 200 {
		t.Errorf("second request: %+v", obs[1])
	}
	if obs[2].Input.CPUUtil != 0 || obs[2].Failed {
		t.Errorf("stale metrics must stay zero, a served request is no failure: %+v", obs[2])
	}
	samples := affinity.Samples(obs)
	want := []float64{1, 0.5, 1} // usual = median(100, 200, 100) = 100; time order: t0, +40s, +1h
	if len(samples) != 3 {
		t.Fatalf("samples %+v", samples)
	}
	for i, w := range want {
		if samples[i].Target != w {
			t.Errorf("sample %d target %v, want %v", i, samples[i].Target, w)
		}
	}
}

type fakeSource struct{}

func (fakeSource) Requests(context.Context, time.Time, time.Time) ([]store.Request, error) {
	return []store.Request{{Time: t0, App: "a", Host: "h", WorkMS: 10}}, nil
}
func (fakeSource) GatewayRequests(context.Context, time.Time, time.Time) ([]store.GatewayRequest, error) {
	return []store.GatewayRequest{
		{Time: t0.Add(time.Second), App: "a", Host: "h", Outcome: records.GatewayWarm, AppMS: 20},
		{Time: t0.Add(2 * time.Second), App: "a", Host: "h", Outcome: records.GatewayFailed},
	}, nil
}
func (fakeSource) AppProfiles(context.Context) ([]store.AppProfile, error) {
	return []store.AppProfile{{ID: "a", MemoryMB: 64}}, nil
}
func (fakeSource) Hosts(context.Context, time.Time) ([]store.Host, error) {
	return []store.Host{{ID: "h", Speed: 1}}, nil
}
func (fakeSource) HostMetricsRange(context.Context, time.Time, time.Time) ([]store.HostMetrics, error) {
	return nil, nil
}

func TestSamplesReadsSource(t *testing.T) {
	// The request's 10 ms and the gateway's 20 ms: usual 20 (the upper
	// median), then the gateway's failure scores 0.
	s, err := Samples(context.Background(), fakeSource{}, t0, t0.Add(time.Hour))
	if err != nil || len(s) != 3 || s[0].Target != 1 || s[1].Target != 1 || s[2].Target != 0 || s[1].Input.SizeMB != 64 {
		t.Fatalf("Samples = %+v, %v", s, err)
	}
}

// Gateway rows take their application's profile (defaults when unknown),
// their instance's own time, and a failure as a failure on its host; a
// row without a host is left out.
func TestFromGateway(t *testing.T) {
	profiles := []store.AppProfile{{ID: "a", MemoryMB: 256, ReadRatio: 0.9, VolumeType: "ssd"}, {ID: "b"}}
	rows := []store.GatewayRequest{
		{Time: t0, App: "a", Host: "h1", Outcome: records.GatewayWarm, Method: "GET", AppMS: 12, StartMS: 0, TotalMS: 13},
		{Time: t0, App: "a", Host: "h1", Outcome: records.GatewayCold, Method: "POST", AppMS: 30, StartMS: 900, TotalMS: 935},
		{Time: t0, App: "b", Host: "h2", Outcome: records.GatewayFailed, Error: "instance died"},
		{Time: t0, App: "c", Host: "h2", Outcome: records.GatewayColdJoined, AppMS: 5, QueueMS: 400},
		{Time: t0, App: "a", Outcome: records.GatewayFailed, Error: "no host could start a"},
	}
	want := []Served{
		{Time: t0, App: "a", Host: "h1", VolumeType: "ssd", SizeMB: 256, ReadRatio: 0.9, LatencyMS: 12},
		{Time: t0, App: "a", Host: "h1", VolumeType: "ssd", SizeMB: 256, ReadRatio: 0.9, LatencyMS: 30},
		{Time: t0, App: "b", Host: "h2", SizeMB: trace.DefaultMemoryMB, Failed: true},
		{Time: t0, App: "c", Host: "h2", SizeMB: trace.DefaultMemoryMB, ReadRatio: trace.DefaultReadRatio, LatencyMS: 5},
	}
	if got := FromGateway(rows, profiles); !reflect.DeepEqual(got, want) {
		t.Errorf("FromGateway =\n%+v\nwant\n%+v", got, want)
	}
}

// Both kinds of rows go through the one join: a gateway failure on a
// known host is an observation that failed.
func TestJoinGatewayFailure(t *testing.T) {
	hosts := []store.Host{{ID: "h1", Speed: 1}}
	obs := Join(FromGateway([]store.GatewayRequest{{Time: t0, App: "a", Host: "h1", Outcome: records.GatewayFailed}}, nil), hosts, nil)
	if len(obs) != 1 || !obs[0].Failed || obs[0].Input.SizeMB != trace.DefaultMemoryMB {
		t.Fatalf("observations %+v", obs)
	}
}
