package keda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
)

// Feed wraps a host driver so the leases it makes open, extend and close
// their application's warm windows in the registry: KEDA scales the
// workload beside the instances the hosts keep.
type Feed struct {
	Next activities.HostClients
	Reg  *Registry
	Log  *slog.Logger
}

// For is Next's client for the host, feeding the registry.
func (f *Feed) For(host, url string) activities.HostClient {
	return feedClient{next: f.Next.For(host, url), f: f}
}

// Permanent is Next's classification.
func (f *Feed) Permanent(err error) bool { return f.Next.Permanent(err) }

// NotFound is Next's classification.
func (f *Feed) NotFound(err error) bool { return f.Next.NotFound(err) }

type feedClient struct {
	next activities.HostClient
	f    *Feed
}

func (c feedClient) open(app, lease string, expires time.Time) {
	if err := c.f.Reg.Open(app, lease, expires); err != nil && c.f.Log != nil {
		c.f.Log.Warn("warm window not opened for KEDA", "lease", lease, "err", err)
	}
}

func (c feedClient) Reserve(ctx context.Context, r activities.HostReservation) (time.Time, error) {
	expires, err := c.next.Reserve(ctx, r)
	if err == nil {
		c.open(r.App, r.LeaseID, expires)
	}
	return expires, err
}

func (c feedClient) Shadow(ctx context.Context, leaseID string, readRatio, sampleMB float64) (float64, error) {
	return c.next.Shadow(ctx, leaseID, readRatio, sampleMB)
}

func (c feedClient) Extend(ctx context.Context, leaseID, app string, ttl time.Duration) (time.Time, error) {
	expires, err := c.next.Extend(ctx, leaseID, app, ttl)
	switch {
	case err == nil:
		// Opened again when the registry lost it (a worker restart).
		c.open(app, leaseID, expires)
	case c.f.Next.NotFound(err):
		_, _ = c.f.Reg.Close(leaseID)
	}
	return expires, err
}

func (c feedClient) Serve(ctx context.Context, s wire.HostServing) (wire.HostServed, error) {
	r, err := c.next.Serve(ctx, s)
	if err == nil && r.Kept && s.KeepID != "" {
		c.open(s.App, s.KeepID, r.KeptExpires)
	}
	return r, err
}

func (c feedClient) Release(ctx context.Context, leaseID string) (activities.HostReleased, error) {
	r, err := c.next.Release(ctx, leaseID)
	if err == nil || c.f.Next.NotFound(err) {
		_, _ = c.f.Reg.Close(leaseID)
	}
	return r, err
}

// HostID and HostURL name the pseudo host of the KEDA driver.
const (
	HostID  = "keda"
	HostURL = "keda://"
)

// Directory lists the one pseudo host of clusters where KEDA scales the
// workloads: room for any application, neutral metrics.
type Directory struct{}

// LiveHosts is the pseudo host.
func (Directory) LiveHosts(context.Context) ([]activities.HostInfo, error) {
	const big = 1 << 30 // MB: the cluster, not Forewarm, decides what fits
	return []activities.HostInfo{{ID: HostID, URL: HostURL, MemoryMB: big, DiskMB: big, CPUMilli: big,
		Speed: 1, FreeMemMB: big}}, nil
}

// Clients is the host driver of clusters where KEDA scales the workloads
// and Forewarm holds nothing: a lease is only a warm window in the
// registry.
type Clients struct {
	Reg *Registry
	// MaxWait bounds a shadow's wait for KEDA when its context has no
	// deadline (0: 30 s).
	MaxWait time.Duration
}

// ErrNotFound is a lease with no window (released, or expired).
var ErrNotFound = errors.New("keda: no warm window for this lease")

// permanent is a refusal no retry can change.
type permanent struct{ msg string }

func (p permanent) Error() string { return p.msg }

// For is the pseudo host's client; any other host's refuses every call.
func (c *Clients) For(host, url string) activities.HostClient {
	if host != HostID || url != HostURL {
		return refused{permanent{fmt.Sprintf("host %s at %s is not the KEDA pseudo host (%s at %s): the worker runs with --hosts keda", host, url, HostID, HostURL)}}
	}
	return kedaClient{c}
}

// Permanent says the call was refused for good.
func (c *Clients) Permanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// NotFound says the lease has no window.
func (c *Clients) NotFound(err error) bool { return errors.Is(err, ErrNotFound) }

type kedaClient struct{ c *Clients }

func (k kedaClient) Reserve(_ context.Context, r activities.HostReservation) (time.Time, error) {
	if r.TTL <= 0 {
		return time.Time{}, permanent{fmt.Sprintf("reserve %s: TTL %v must be positive", r.LeaseID, r.TTL)}
	}
	expires := k.c.Reg.Now().Add(r.TTL)
	if err := k.c.Reg.Open(r.App, r.LeaseID, expires); err != nil {
		return time.Time{}, permanent{err.Error()}
	}
	return expires, nil
}

// Shadow waits until the scaler has told KEDA the application is active
// (since the window opened): KEDA then scales the workload up. It waits
// until shortly before the context's deadline; nobody asking by then is a
// refusal, so the loop releases and records why.
func (k kedaClient) Shadow(ctx context.Context, leaseID string, _, _ float64) (float64, error) {
	start := time.Now()
	limit := k.c.MaxWait
	if limit <= 0 {
		limit = 30 * time.Second
	}
	if d, ok := ctx.Deadline(); ok {
		// Leave time to report the refusal before the activity times out.
		limit = time.Until(d) - min(time.Second, time.Until(d)/10)
	}
	timeout := time.NewTimer(max(0, limit))
	defer timeout.Stop()
	for {
		changed := k.c.Reg.Changed()
		app, told, known := k.c.Reg.toldOf(leaseID)
		if !known {
			return 0, fmt.Errorf("shadow %s: %w", leaseID, ErrNotFound)
		}
		if told {
			return float64(time.Since(start).Microseconds()) / 1000, nil
		}
		select {
		case <-changed:
		case <-timeout.C:
			return 0, permanent{fmt.Sprintf("KEDA has not asked the scaler about %s", app)}
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (k kedaClient) Extend(_ context.Context, leaseID, app string, ttl time.Duration) (time.Time, error) {
	expires := k.c.Reg.Now().Add(ttl)
	if err := k.c.Reg.Extend(leaseID, expires); err != nil {
		return time.Time{}, fmt.Errorf("%w (%v)", ErrNotFound, err)
	}
	return expires, nil
}

func (k kedaClient) Serve(_ context.Context, s wire.HostServing) (wire.HostServed, error) {
	return wire.HostServed{}, permanent{fmt.Sprintf("request %s: requests reach %s through the cluster (KEDA scales its workload), not through Forewarm", s.RequestID, s.App)}
}

func (k kedaClient) Release(_ context.Context, leaseID string) (activities.HostReleased, error) {
	e, err := k.c.Reg.Close(leaseID)
	if err != nil {
		return activities.HostReleased{}, fmt.Errorf("%w (%v)", ErrNotFound, err)
	}
	held := e.Ended.Sub(e.Opened).Seconds()
	if e.Expired {
		return activities.HostReleased{State: "expired", Note: "the warm window reached its expiry before its release",
			EndedAt: e.Ended, HeldSeconds: held}, nil
	}
	return activities.HostReleased{Released: true, State: "released", HeldSeconds: held}, nil
}

// refused fails every call with err.
type refused struct{ err error }

func (r refused) Reserve(context.Context, activities.HostReservation) (time.Time, error) {
	return time.Time{}, r.err
}
func (r refused) Shadow(context.Context, string, float64, float64) (float64, error) { return 0, r.err }
func (r refused) Extend(context.Context, string, string, time.Duration) (time.Time, error) {
	return time.Time{}, r.err
}
func (r refused) Serve(context.Context, wire.HostServing) (wire.HostServed, error) {
	return wire.HostServed{}, r.err
}
func (r refused) Release(context.Context, string) (activities.HostReleased, error) {
	return activities.HostReleased{}, r.err
}
