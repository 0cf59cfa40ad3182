package adapters

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	agentclient "github.com/forewarm/forewarm/agent/client"
)

// HostClients builds one agent client per host and URL through the trust
// policy (allow-listed URLs only, each host's own token) and keeps it
// (activities.HostClients).
type HostClients struct {
	trust *agentclient.Trust
	log   *slog.Logger
	mu    sync.Mutex
	byKey map[[2]string]activities.HostClient
}

// NewHostClients builds the clients of the agents trust allows.
func NewHostClients(trust *agentclient.Trust, log *slog.Logger) *HostClients {
	return &HostClients{trust: trust, log: log, byKey: map[[2]string]activities.HostClient{}}
}

// For is the client of host's agent at url; one the trust policy refuses
// fails every call with the refusal.
func (h *HostClients) For(host, url string) activities.HostClient {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := [2]string{host, url}
	if c, ok := h.byKey[key]; ok {
		return c
	}
	var hc activities.HostClient
	c, err := h.trust.Client(host, url)
	if err != nil {
		h.log.Warn("refusing to call a host agent", "host", host, "url", url, "err", err)
		hc = refusedClient{err}
	} else {
		hc = hostClient{c}
	}
	if len(h.byKey) > 10_000 {
		clear(h.byKey) // hosts come and go; a rebuilt client costs little
	}
	h.byKey[key] = hc
	return hc
}

// Permanent says the host refused for good.
func (h *HostClients) Permanent(err error) bool { return agentclient.IsPermanent(err) }

// NotFound says the host no longer holds the lease.
func (h *HostClients) NotFound(err error) bool {
	return errors.Is(err, agentclient.ErrNotFound) || errors.Is(err, agentclient.ErrGone)
}

type hostClient struct{ c *agentclient.Client }

func (h hostClient) Reserve(ctx context.Context, r activities.HostReservation) (time.Time, error) {
	l, err := h.c.Reserve(ctx, agentclient.ReserveRequest{PreparationID: r.LeaseID, App: r.App, MemoryMB: r.MemoryMB,
		DiskMB: r.DiskMB, CPUMilli: r.CPUMilli, TTL: r.TTL})
	return l.Expires, err
}

func (h hostClient) Shadow(ctx context.Context, leaseID string, readRatio, sampleMB float64) (float64, error) {
	r, err := h.c.Shadow(ctx, agentclient.ShadowRequest{PreparationID: leaseID, ReadRatio: readRatio, SampleMB: sampleMB})
	return r.TotalMS, err
}

func (h hostClient) Extend(ctx context.Context, leaseID, app string, ttl time.Duration) (time.Time, error) {
	l, err := h.c.Extend(ctx, leaseID, ttl, app)
	return l.Expires, err
}

func (h hostClient) Serve(ctx context.Context, s wire.HostServing) (wire.HostServed, error) {
	r, err := h.c.Serve(ctx, agentclient.ServeRequest{RequestID: s.RequestID, App: s.App, PreparationID: s.LeaseID,
		MemoryMB: s.MemoryMB, DiskMB: s.DiskMB, ReadRatio: s.ReadRatio, WorkMS: s.WorkMS, FallbackCold: s.LeaseID != "",
		KeepID: s.KeepID, KeepTTLSeconds: s.KeepTTL.Seconds(), KeepMemoryMB: s.KeepMemoryMB, KeepDiskMB: s.KeepDiskMB,
		KeepCPUMilli: s.KeepCPUMilli})
	if err != nil {
		return wire.HostServed{}, err
	}
	return wire.HostServed{Warm: r.Warm, SetupMS: r.SetupMS, WorkMS: r.WorkMS, TotalMS: r.TotalMS,
		FallbackCode: r.FallbackCode, Kept: r.Kept, KeptExpires: r.KeptExpires, KeepRefused: r.KeepRefused, Replayed: r.Replayed}, nil
}

func (h hostClient) Release(ctx context.Context, leaseID string) (activities.HostReleased, error) {
	r, err := h.c.ReleaseLease(ctx, leaseID)
	if err != nil {
		return activities.HostReleased{}, err
	}
	return activities.HostReleased{Released: r.Released, State: r.State, Note: r.Note, EndedAt: r.EndedAt, HeldSeconds: r.HeldSeconds, RequestsServed: r.RequestsServed,
		BusyMBs: r.BusyMBs, IdleMBs: r.IdleMBs, Fallbacks: r.FallbackConcurrency + r.FallbackOversize}, nil
}

// refusedClient stands for an agent the trust policy will not call: every
// call fails with the (permanent) refusal.
type refusedClient struct{ err error }

func (r refusedClient) Reserve(context.Context, activities.HostReservation) (time.Time, error) {
	return time.Time{}, r.err
}
func (r refusedClient) Shadow(context.Context, string, float64, float64) (float64, error) {
	return 0, r.err
}
func (r refusedClient) Extend(context.Context, string, string, time.Duration) (time.Time, error) {
	return time.Time{}, r.err
}
func (r refusedClient) Serve(context.Context, wire.HostServing) (wire.HostServed, error) {
	return wire.HostServed{}, r.err
}
func (r refusedClient) Release(context.Context, string) (activities.HostReleased, error) {
	return activities.HostReleased{}, r.err
}
