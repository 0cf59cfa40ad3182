//go:build k8s

// A loop on the real stack warming an application's own pods on the test
// control plane: `make test-k8s` starts it all.

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/testenv/kubetest"
	"github.com/forewarm/forewarm/kube"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/workflows"
)

// TestLoopWarmsPodsOnKubernetes: a router-mode loop, told of its
// application's requests by the arrivals a router records, prepares a
// warm pod of the application's Deployment on the best-ranked node; the
// shadow request passes, the Service's endpoints include the pod, the
// loop's extensions keep the same pod, and stopping the loop deletes it.
// Then a worker that dies holding a warm pod leaves it to the next
// worker's janitor, which deletes it once its expiry passes.
func TestLoopWarmsPodsOnKubernetes(t *testing.T) {
	c := kubetest.New(t)
	k := newStack(t)
	ns := c.Namespace(t)
	pool := "pool-" + ns
	big := c.Node(t, pool, 8192, 4)
	c.Node(t, pool, 512, 4)
	port := 18000 + int(time.Now().UnixNano()%1000)
	c.StandIn(t, port)
	kubetest.Shop(t, c.Client, ns, port)

	app := k.prefix + "-shop"
	apps := filepath.Join(t.TempDir(), "apps.json")
	require.NoError(t, os.WriteFile(apps, fmt.Appendf(nil, `{"apps":[{"app":%q,"namespace":%q,"deployment":"shop","port":%d,
		"shadow":{"method":"POST","path":"/shadow","body":"{}","max_latency":"1s"}}]}`, app, ns, port), 0o600))
	k.s.Hosts = "kubernetes"
	k.s.KEDAListen = "127.0.0.1:0" // the leases also feed KEDA's scaler
	k.s.Kube = kubeSettings{Apps: apps, Config: os.Getenv("FOREWARM_KUBECONFIG"), Nodes: "forewarm.io/pool=" + pool, JanitorEvery: time.Second}
	require.NoError(t, k.s.Kube.check())

	k.loadHistory([]string{k.prefix + "-busy1", k.prefix + "-busy2", app}, []int{2, 3, 2}, 600)
	const bin = 4 * time.Second
	k.s.ArrivalsBin, k.s.ArrivalsSpan = bin, 256
	k.startWorker()
	if tr := k.train(1); !tr.Demand.Published {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		require.NoError(t, k.st.SetModelStatus(ctx, tr.Demand.Candidate, store.StatusChampion))
		cancel()
	}

	// The router: a request of the application in every bin while on.
	var on atomic.Bool
	on.Store(true)
	rctx, stopRouter := context.WithCancel(context.Background())
	defer stopRouter()
	go func() {
		for n := 0; ; n++ {
			open := time.Now().Truncate(bin)
			select {
			case <-rctx.Done():
				return
			case <-time.After(time.Until(open.Add(bin).Add(100 * time.Millisecond))):
			}
			if !on.Load() {
				continue
			}
			ctx, cancel := context.WithTimeout(rctx, 5*time.Second)
			_ = k.st.RecordArrivals(ctx, store.ArrivalBatch{Router: "test-router", Batch: fmt.Sprint(n),
				Rows: []store.Arrival{{App: app, Bin: open, Requests: 1}}})
			cancel()
		}
	}()
	startLoop := func() {
		start := time.Now().Truncate(bin).Add(bin)
		pol := workflows.DefaultPolicy()
		pol.Threshold, pol.MaxSleepBins = 0.3, 4
		k.startLoopInput(workflows.LoopInput{App: app, Bin: bin, Policy: pol, Router: true, Seeded: true,
			Profile: wire.AppProfile{App: app, MemoryMB: 64, DiskMB: 16, CPUMilli: 100},
			Clock:   &workflows.TraceClock{RealStart: start, TraceStart: start, TraceBin: time.Second}})
	}
	warm := func(within time.Duration) *corev1.Pod {
		var pod *corev1.Pod
		kubetest.Eventually(t, within, "a Ready warm pod of "+app, func() (bool, error) {
			for _, p := range kubetest.WarmPods(t, c.Client, ns) {
				for _, cond := range p.Status.Conditions {
					if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
						pod = &p
						return true, nil
					}
				}
			}
			return false, nil
		})
		return pod
	}

	startLoop()
	pod := warm(12 * bin)
	require.Equal(t, big, pod.Spec.NodeName, "on the best-ranked node (8 GiB free against 512 MiB)")
	require.Equal(t, app, pod.Annotations[kube.AnnotationApp])
	require.Equal(t, kube.AppLabel(app), pod.Labels[kube.LabelApp])
	require.Equal(t, int64(64<<20), pod.Spec.Containers[0].Resources.Requests.Memory().Value(), "the lease's memory as the pod's request")
	kubetest.EndpointsInclude(t, c.Client, ns, "shop", pod)
	st := k.status(app)
	t.Logf("warm pod %s on %s; loop: %s", pod.Name, pod.Spec.NodeName, st.LastDecision)
	// KEDA, asked through its own client, sees the application active.
	conn, err := grpc.NewClient(k.running.scalerAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	scaler := externalscaler.NewExternalScalerClient(conn)
	ref := &externalscaler.ScaledObjectRef{Name: "shop", Namespace: ns, ScalerMetadata: map[string]string{"app": app}}
	active, err := scaler.IsActive(context.Background(), ref)
	require.NoError(t, err)
	require.True(t, active.Result, "KEDA's scaler: active while the warm pod is held")

	// While requests come, the loop keeps the same pod (extensions move
	// its expiry).
	first, err := time.Parse(time.RFC3339Nano, pod.Annotations[kube.AnnotationUntil])
	require.NoError(t, err)
	kubetest.Eventually(t, 8*bin, "the warm pod extended in place", func() (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		until, err := time.Parse(time.RFC3339Nano, p.Annotations[kube.AnnotationUntil])
		return p.UID == pod.UID && until.After(first), err
	})
	require.Len(t, kubetest.WarmPods(t, c.Client, ns), 1, "one warm pod, kept")

	on.Store(false)
	res := k.stopLoop(app)
	t.Logf("loop stopped: %+v", res.Stats.Decisions)
	kubetest.Eventually(t, 30*time.Second, "no warm pod after the loop stopped", func() (bool, error) {
		return len(kubetest.WarmPods(t, c.Client, ns)) == 0, nil
	})
	active, err = scaler.IsActive(context.Background(), ref)
	require.NoError(t, err)
	require.False(t, active.Result, "KEDA's scaler: inactive after the release")

	// A worker that dies holding a pod: its loop is gone too (terminated),
	// so nothing releases it; the next worker's janitor deletes it after
	// its expiry.
	on.Store(true)
	startLoop()
	pod = warm(12 * bin)
	on.Store(false)
	k.stopWorker()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	require.NoError(t, k.c.TerminateWorkflow(ctx, workflows.LoopWorkflowID(app), "", "its worker died"))
	cancel()
	p, err := c.Client.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
	require.NoError(t, err, "the dead worker's pod is still there")
	until, err := time.Parse(time.RFC3339Nano, p.Annotations[kube.AnnotationUntil])
	require.NoError(t, err)
	k.startWorker()
	kubetest.Gone(t, c.Client, ns, pod.Name, time.Until(until)+10*time.Second)
	t.Logf("the lost warm pod was deleted %.1f s after its expiry (janitor every 1 s)", time.Since(until).Seconds())
	require.Empty(t, kubetest.WarmPods(t, c.Client, ns))
}
