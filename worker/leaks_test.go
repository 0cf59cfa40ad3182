package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/workflows"
)

// The lease-leak paths, each on the real stack. A host agent's TTL frees
// whatever a lost loop left behind, but it is the last resort: none of
// these paths may need it.

// requestSized serves one request of sizeMB through the serve-request
// workflow and returns its result.
func (k *stack) requestSized(app string, sizeMB float64) workflows.RequestResult {
	_, res := k.requestSizedID(app, sizeMB)
	return res
}

// requestSizedID is requestSized that also returns the workflow ID.
func (k *stack) requestSizedID(app string, sizeMB float64) (string, workflows.RequestResult) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in := workflows.RequestInput{RequestID: uuid.NewString(), App: app, MemoryMB: sizeMB, DiskMB: 4, ReadRatio: 0.7, WorkMS: 20}
	run, err := k.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.RequestWorkflowID(app, in.RequestID), TaskQueue: k.s.PredictionQueue},
		workflows.RequestWorkflowName, in)
	require.NoError(k.t, err)
	var res workflows.RequestResult
	require.NoError(k.t, run.Get(ctx, &res))
	return run.GetID(), res
}

// A request larger than the warm instance is served cold beside it; the
// instance stays on its host and in its loop, and serves the next request
// that fits, warm.
func TestLeakRequestTooLargeForTheLeaseLeavesItServing(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-big"
	k.loadHistory([]string{app}, []int{2}, 600) // 16 MB requests: 16 MB instances
	k.startAgent("only", 2048, 1, 0)
	k.startWorker()
	k.trainedModel()
	k.startLoop(app, holdAlways())
	k.waitFor("a warm instance", 60*time.Second, func() bool { return len(k.status(app).Leases) > 0 })
	lease := k.status(app).Leases[0]
	require.Equal(t, 16.0, lease.MemoryMB)

	bigID, big := k.requestSizedID(app, 64)
	require.False(t, big.Warm, "a 64 MB request does not fit a 16 MB instance: %+v", big)
	require.Equal(t, "cold", big.Outcome)
	require.Empty(t, big.LeaseID)
	st := k.status(app)
	require.Len(t, st.Leases, 1)
	require.Equal(t, lease.LeaseID, st.Leases[0].LeaseID, "the loop still holds its instance")
	onHost := k.leasesOn("only")
	require.Len(t, onHost, 1, "the host holds the instance, and no instance of the cold request: %+v", onHost)
	require.Equal(t, lease.LeaseID, onHost[0].PreparationID)
	require.Equal(t, api.StateReady, onHost[0].State)

	small := k.requestSized(app, 16)
	require.True(t, small.Warm, "the next request that fits is served warm: %+v", small)
	require.Equal(t, lease.LeaseID, small.LeaseID)

	k.stopLoop(app)
	require.Eventually(t, func() bool { return len(k.leasesOn("only")) == 0 }, 20*time.Second, 200*time.Millisecond, "no lease left")
	if dir := os.Getenv("FOREWARM_RECORD_HISTORIES"); dir != "" {
		k.recordHistories(dir, map[string]string{"request-cold.json": bigID})
	}
}

// A request that claimed a warm instance whose host then fails to serve on
// it: the instance is released on its host, the request is served cold,
// the loop drops the instance and prepares a new one; nothing is left for
// the TTL.
func TestLeakClaimedInstanceThatFailsToServeIsReleased(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-fail"
	k.loadHistory([]string{app}, []int{2}, 600)
	var failWarm atomic.Bool
	var warmFailures atomic.Int32
	k.startAgentWrapped("only", 2048, 1, 0, 0, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == api.PathServe && failWarm.Load() {
				body, _ := io.ReadAll(r.Body)
				var req api.ServeRequest
				if json.Unmarshal(body, &req) == nil && req.PreparationID != "" {
					warmFailures.Add(1)
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusInternalServerError)
					_ = json.NewEncoder(w).Encode(api.ErrorBody{Code: api.CodeInternal, Message: "the instance's runtime crashed"})
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			h.ServeHTTP(w, r)
		})
	})
	k.startWorker()
	k.trainedModel()
	k.startLoop(app, holdAlways())
	k.waitFor("a warm instance", 60*time.Second, func() bool { return len(k.status(app).Leases) > 0 })
	lease := k.status(app).Leases[0]

	failWarm.Store(true)
	res := k.requestSized(app, 16)
	failWarm.Store(false)
	require.Positive(t, warmFailures.Load(), "the claimed instance failed to serve")
	require.False(t, res.Warm)
	require.Equal(t, "cold-after-warm-failure", res.Outcome)
	require.Equal(t, "only", res.Host, "served cold instead")
	for _, l := range k.leasesOn("only") {
		require.NotEqual(t, lease.LeaseID, l.PreparationID, "the failed instance is released on its host")
	}
	k.waitFor("the loop to drop the failed instance and prepare another", 60*time.Second, func() bool {
		st := k.status(app)
		return len(st.Leases) == 1 && st.Leases[0].LeaseID != lease.LeaseID
	})
	k.stopLoop(app)
	require.Eventually(t, func() bool { return len(k.leasesOn("only")) == 0 }, 20*time.Second, 200*time.Millisecond, "no lease left")
}

// A reserve still on its way to the host when its preparation is
// cancelled (the loop stopped): the preparation's release reaches the host
// first and finds nothing, the host remembers the ID, and the late reserve
// is refused — no orphan for the TTL to reclaim.
func TestLeakLateReserveAfterCancelledPreparationIsRefused(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-late"
	k.loadHistory([]string{app}, []int{2}, 600)
	arrived := make(chan string, 4)
	var released sync.Once
	releasedCh := make(chan struct{})
	lateStatus := make(chan int, 4)
	k.startAgentWrapped("only", 2048, 1, 0, 0, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodPost && r.URL.Path == api.PathLeases:
				// The reserve is held on the way, as by a slow network,
				// until the release has been handled; it then reaches the
				// host even if its caller gave up meanwhile.
				body, _ := io.ReadAll(r.Body)
				var req api.ReserveRequest
				_ = json.Unmarshal(body, &req)
				arrived <- req.PreparationID
				select {
				case <-releasedCh:
				case <-time.After(60 * time.Second):
				}
				rec := &statusWriter{ResponseWriter: w}
				r2 := r.Clone(context.Background())
				r2.Body = io.NopCloser(bytes.NewReader(body))
				h.ServeHTTP(rec, r2)
				lateStatus <- rec.status
			case r.Method == http.MethodDelete:
				h.ServeHTTP(w, r)
				released.Do(func() { close(releasedCh) })
			default:
				h.ServeHTTP(w, r)
			}
		})
	})
	k.startWorker()
	k.trainedModel()
	k.startLoop(app, holdAlways())

	var leaseID string
	select {
	case leaseID = <-arrived:
	case <-time.After(60 * time.Second):
		t.Fatal("no reserve reached the host")
	}
	st := k.status(app)
	require.NotEmpty(t, st.Preparing, "the reserve is in flight for the preparation")
	require.Equal(t, workflows.LeaseID(st.Preparing, "only"), leaseID)

	res := k.stopLoop(app) // cancels the preparation; its release goes out
	require.Equal(t, "stopped: test over", res.Reason)
	select {
	case code := <-lateStatus:
		require.Equal(t, http.StatusGone, code, "the late reserve is refused by the release's tombstone")
	case <-time.After(60 * time.Second):
		t.Fatal("the late reserve never reached the host")
	}
	m := k.agents["only"].a.Metrics()
	require.Zero(t, m.Leases, "no orphan lease")
	require.Zero(t, m.ReservedMemMB)
	require.Positive(t, m.Tombstones)
	require.Empty(t, k.leasesOn("only"))
	if dir := os.Getenv("FOREWARM_RECORD_HISTORIES"); dir != "" {
		k.recordHistories(dir, map[string]string{
			"loop-stopped-mid-preparation.json": workflows.LoopWorkflowID(app),
			"preparation-cancelled.json":        st.Preparing,
		})
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
