package adapters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	agentclient "github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/store"
)

// The adapter tests are unit tests (no services); `make test` runs them
// under the race detector too.

const root = "adapters-test-root-secret-0123456789"

// blockingRegistry answers ChampionVersion once release is closed.
type blockingRegistry struct {
	release chan struct{}
	err     error
	lists   atomic.Int32
}

func (r *blockingRegistry) ChampionVersion(ctx context.Context, _ string) (string, error) {
	r.lists.Add(1)
	select {
	case <-r.release:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return "", r.err
}

func (r *blockingRegistry) Model(context.Context, string) (store.ModelRecord, error) {
	return store.ModelRecord{}, errors.New("no such model")
}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Warn(msg string, _ ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

// While one caller waits on a registry that hangs, every other score is
// answered at once with the model in hand: no lock is held across the
// registry call (nor, on the same path, across loading a model).
func TestAdapterAffinityScorerHoldsNoLockAcrossTheRegistry(t *testing.T) {
	reg := &blockingRegistry{release: make(chan struct{}), err: errors.New("dial tcp: connection refused")}
	var warned warnings
	a := &AffinityScorer{Src: reg, CheckEvery: time.Hour, Log: &warned}
	app := wire.AppProfile{App: "a", MemoryMB: 64}
	hosts := []activities.HostInfo{{ID: "h1", MemoryMB: 4096, Speed: 1}, {ID: "h2", MemoryMB: 1024, Speed: 0.5}}

	first := make(chan error, 1)
	go func() {
		_, _, err := a.Score(context.Background(), app, hosts)
		first <- err
	}()
	require.Eventually(t, func() bool { return reg.lists.Load() == 1 }, 5*time.Second, time.Millisecond)
	for range 50 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			scores, version, err := a.Score(context.Background(), app, hosts)
			if err != nil || len(scores) != 2 || version != affinity.Default().Version() {
				t.Errorf("score while the registry hangs: %v %q %v", scores, version, err)
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a score waited for the registry call of another")
		}
	}
	require.EqualValues(t, 1, reg.lists.Load(), "one caller asks the registry at a time")
	close(reg.release)
	require.NoError(t, <-first, "the registry's failure keeps the model in hand")
	warned.mu.Lock()
	require.Equal(t, []string{"model registry unreachable; keeping the affinity model"}, warned.msgs)
	warned.mu.Unlock()
}

// Loops prepare on many hosts at once: the per-host clients are built and
// shared under concurrent use (run with -race).
func TestAdapterHostClientsUnderConcurrentUse(t *testing.T) {
	trust, err := agentclient.NewTrust(agentclient.TrustConfig{RootSecret: []byte(root)})
	require.NoError(t, err)
	hc := NewHostClients(trust, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for j := range 50 {
				host := fmt.Sprintf("h%d", (i+j)%8)
				c := hc.For(host, fmt.Sprintf("http://127.0.0.1:%d", 7000+(i+j)%8))
				if _, ok := c.(hostClient); !ok {
					t.Errorf("client for %s is %T, want a trusted hostClient", host, c)
				}
				if c := hc.For(host, "http://10.0.0.1:7000"); c == nil {
					t.Error("no client")
				} else if _, refused := c.(refusedClient); !refused {
					t.Errorf("plain HTTP off loopback was trusted for %s", host)
				}
			}
		})
	}
	wg.Wait()
	hc.mu.Lock()
	defer hc.mu.Unlock()
	require.Len(t, hc.byKey, 16, "one client per host and URL, built once")
}

// The host clients refuse, before any connection, an agent URL
// off the allow list or plain HTTP off loopback: every call fails with a
// permanent refusal the activities do not retry.
func TestHostClientsRefuseURLsOffTheAllowList(t *testing.T) {
	trust, err := agentclient.NewTrust(agentclient.TrustConfig{RootSecret: []byte(root)})
	if err != nil {
		t.Fatal(err)
	}
	hc := NewHostClients(trust, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for url, code := range map[string]string{
		"http://203.0.113.7:7071":        agentclient.CodeURLNotAllowed,
		"http://127.0.0.1:7071/../admin": agentclient.CodeBadURL,
	} {
		c := hc.For("h1", url)
		_, err := c.Reserve(ctx, activities.HostReservation{LeaseID: "l", App: "a", MemoryMB: 1, TTL: time.Minute})
		if agentclient.Code(err) != code || !hc.Permanent(err) {
			t.Errorf("%s: %v, want a permanent %s", url, err, code)
		}
		if _, err := c.Release(ctx, "l"); agentclient.Code(err) != code {
			t.Errorf("%s release: %v", url, err)
		}
	}
	open, err := agentclient.NewTrust(agentclient.TrustConfig{RootSecret: []byte(root), AllowURL: `https?://[^/]+`})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewHostClients(open, slog.Default()).For("h1", "http://203.0.113.7:7071").Serve(ctx, wire.HostServing{RequestID: "r", App: "a"})
	var te *agentclient.TrustError
	if !errors.As(err, &te) || te.Code != agentclient.CodeInsecureURL {
		t.Errorf("plain HTTP off loopback: %v, want insecure_url", err)
	}
}
