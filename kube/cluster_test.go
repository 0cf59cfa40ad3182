//go:build k8s

// The driver on a real control plane: `make test-k8s` starts one.

package kube_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/appspec"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/internal/testenv/kubetest"
	"github.com/forewarm/forewarm/kube"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/worker/adapters"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveInstApp()
	os.Exit(code)
}

// noModels is a registry with no affinity champion: the scorer ranks with
// the heuristic (affinity.Default), as a worker does before training.
type noModels struct{}

func (noModels) ChampionVersion(context.Context, string) (string, error) { return "", store.ErrNoModel }
func (noModels) Model(context.Context, string) (store.ModelRecord, error) {
	return store.ModelRecord{}, store.ErrNoModel
}

func shopApp(ns string, port int) kube.App {
	a := kube.App{App: "shop", Namespace: ns, Deployment: "shop", Port: port, Ready: appspec.Duration(30 * time.Second),
		Shadow: appspec.Shadow{Method: "POST", Path: "/shadow", Body: `{"x":1}`, MaxLatency: appspec.Duration(time.Second)}}
	if err := a.Validate(); err != nil {
		panic(err)
	}
	return a
}

// TestWarmPodLifecycle: ranked on the cluster's nodes, a lease becomes a
// pod of the application's own template on the best node; its shadow
// request reaches the pod; the Service's endpoints include it; extension
// keeps the pod; release deletes it; the driver runs as the worker's
// service account with the shipped roles only.
func TestWarmPodLifecycle(t *testing.T) {
	c := kubetest.New(t)
	ns := c.Namespace(t)
	pool := "pool-" + ns
	big := c.Node(t, pool, 8192, 4)
	small := c.Node(t, pool, 1024, 4)
	port := 18000 + int(uuid.New().ID()%1000)
	c.StandIn(t, port)
	kubetest.Shop(t, c.Client, ns, port)

	cfg := c.DriverIdentity(t, ns)
	d := &kube.Driver{Client: kubernetes.NewForConfigOrDie(cfg), Apps: map[string]kube.App{"shop": shopApp(ns, port)},
		Nodes: labels.SelectorFromSet(labels.Set{"forewarm.io/pool": pool})}
	hosts := &activities.Hosts{Directory: d, Clients: d, Log: slog.Default(),
		Affinity: &adapters.AffinityScorer{Src: noModels{}, CheckEvery: time.Hour, Log: slog.Default()}}
	ctx := context.Background()

	ranked, err := hosts.RankHosts(ctx, wire.RankInput{Profile: wire.AppProfile{App: "shop", MemoryMB: 256, DiskMB: 64, CPUMilli: 250}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ranked.Candidates) != 2 {
		t.Fatalf("ranked %+v, want the pool's two nodes", ranked.Candidates)
	}
	best := ranked.Candidates[0]
	t.Logf("ranked: %s %.3f, %s %.3f", best.Host, best.Score, ranked.Candidates[1].Host, ranked.Candidates[1].Score)
	if best.Host != big {
		t.Errorf("best-ranked node %s, want %s (8 GiB free against 1 GiB on %s)", best.Host, big, small)
	}

	lease := uuid.NewString()
	if _, err := hosts.Reserve(ctx, wire.ReserveInput{LeaseID: lease, App: "shop", Candidate: best, MemoryMB: 256, DiskMB: 64, CPUMilli: 250, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// A retried reserve (lost reply) finds the same pod.
	if _, err := hosts.Reserve(ctx, wire.ReserveInput{LeaseID: lease, App: "shop", Candidate: best, MemoryMB: 256, TTL: time.Minute}); err != nil {
		t.Fatalf("retried reserve: %v", err)
	}
	sh, err := hosts.Shadow(ctx, wire.ShadowInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL, MaxMS: 30_000})
	if err != nil || !sh.OK {
		t.Fatalf("shadow: %+v %v", sh, err)
	}
	t.Logf("ready and shadow answered in %.1f ms", sh.ShadowMS)
	pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, kube.PodName(lease), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != best.Host {
		t.Errorf("warm pod on %s, want the best-ranked %s", pod.Spec.NodeName, best.Host)
	}
	if got := pod.Spec.Containers[0].Resources.Requests.Memory().Value(); got != 256<<20 {
		t.Errorf("memory request %d, want the lease's 256 MiB", got)
	}
	if got := pod.Spec.Containers[0].Resources.Requests.Cpu().MilliValue(); got != 250 {
		t.Errorf("CPU request %dm, want the lease's 250m", got)
	}
	if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].Kind != "Deployment" || pod.OwnerReferences[0].Name != "shop" {
		t.Errorf("owner references %+v, want the Deployment shop", pod.OwnerReferences)
	}
	kubetest.EndpointsInclude(t, c.Client, ns, "shop", pod)
	// The pod answers at its address (what the Service sends it).
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/healthz", pod.Status.PodIP, port))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// The ranking now counts the pod's requests on its node.
	live, err := d.LiveHosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	free := map[string]float64{}
	for _, h := range live {
		free[h.ID] = h.FreeMemMB
	}
	if free[big] != 8192-256 {
		t.Errorf("free memory on %s %.0f MB, want 8192-256 (hosts %v)", big, free[big], free)
	}

	ext, err := hosts.Extend(ctx, wire.ExtendInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL, TTL: 5 * time.Minute})
	if err != nil || !ext.Extended {
		t.Fatalf("extend: %+v %v", ext, err)
	}
	after, err := c.Client.CoreV1().Pods(ns).Get(ctx, kube.PodName(lease), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != pod.UID {
		t.Errorf("extension replaced the pod (%s → %s)", pod.UID, after.UID)
	}
	if until, _ := time.Parse(time.RFC3339Nano, after.Annotations[kube.AnnotationUntil]); until.Sub(ext.Expires).Abs() > time.Millisecond || time.Until(until) < 4*time.Minute {
		t.Errorf("expiry annotation %q, want the extension's %s", after.Annotations[kube.AnnotationUntil], ext.Expires)
	}

	rel, err := hosts.Release(ctx, wire.ReleaseInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL})
	if err != nil || !rel.WasHeld {
		t.Fatalf("release: %+v %v", rel, err)
	}
	kubetest.Gone(t, c.Client, ns, pod.Name, 30*time.Second)
	// Released twice (a retry): the lease is known gone, not an error.
	if rel, err := hosts.Release(ctx, wire.ReleaseInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL}); err != nil || rel.WasHeld {
		t.Fatalf("second release: %+v %v", rel, err)
	}
	if ext, err := hosts.Extend(ctx, wire.ExtendInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL, TTL: time.Minute}); err != nil || !ext.Gone {
		t.Fatalf("extend after release: %+v %v, want gone", ext, err)
	}
	if left := kubetest.WarmPods(t, c.Client, ns); len(left) != 0 {
		t.Errorf("%d warm pods left", len(left))
	}
}

// TestJanitorAndOwnerCleanUp: leases of a worker that died (never
// released) are deleted by another worker's janitor within one TTL; the
// application's deletion deletes its warm pods (owner references); an
// unschedulable lease is refused with the scheduler's reason.
func TestJanitorAndOwnerCleanUp(t *testing.T) {
	c := kubetest.New(t)
	ns := c.Namespace(t)
	pool := "pool-" + ns
	node := c.Node(t, pool, 2048, 2)
	port := 18000 + int(uuid.New().ID()%1000)
	c.StandIn(t, port)
	kubetest.Shop(t, c.Client, ns, port)
	apps := map[string]kube.App{"shop": shopApp(ns, port)}
	sel := labels.SelectorFromSet(labels.Set{"forewarm.io/pool": pool})
	ctx := context.Background()

	// The worker that dies: two leases of 3 s, never released.
	lost := &kube.Driver{Client: c.Client, Apps: apps, Nodes: sel}
	ttl := 3 * time.Second
	var names []string
	for range 2 {
		id := uuid.NewString()
		if _, err := lost.For(node, kube.URLScheme+node).Reserve(ctx, activities.HostReservation{LeaseID: id, App: "shop", MemoryMB: 128, CPUMilli: 100, TTL: ttl}); err != nil {
			t.Fatal(err)
		}
		names = append(names, kube.PodName(id))
	}
	start := time.Now()
	jctx, stop := context.WithCancel(ctx)
	defer stop()
	janitor := &kube.Janitor{Driver: &kube.Driver{Client: c.Client, Apps: apps, Nodes: sel}, Every: 500 * time.Millisecond}
	go janitor.Run(jctx)
	for _, n := range names {
		kubetest.Gone(t, c.Client, ns, n, 2*ttl)
	}
	t.Logf("expired warm pods deleted %.1f s after they were made (TTL %s)", time.Since(start).Seconds(), ttl)
	stop()

	// Owner references: deleting the application deletes its warm pods.
	id := uuid.NewString()
	if _, err := lost.For(node, kube.URLScheme+node).Reserve(ctx, activities.HostReservation{LeaseID: id, App: "shop", MemoryMB: 128, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	bg := metav1.DeletePropagationBackground
	if err := c.Client.AppsV1().Deployments(ns).Delete(ctx, "shop", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	kubetest.Gone(t, c.Client, ns, kube.PodName(id), 60*time.Second)

	// More than the node holds: the scheduler's reason reaches the loop.
	kubetest.Shop(t, c.Client, ns, port)
	id = uuid.NewString()
	cl := lost.For(node, kube.URLScheme+node)
	if _, err := cl.Reserve(ctx, activities.HostReservation{LeaseID: id, App: "shop", MemoryMB: 4096, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	short := shopApp(ns, port)
	short.Ready = appspec.Duration(3 * time.Second)
	lost.Apps = map[string]kube.App{"shop": short}
	_, err := cl.Shadow(ctx, id, 0, 0)
	if err == nil || !lost.Permanent(err) || !strings.Contains(err.Error(), "not scheduled") {
		t.Fatalf("shadow of an unschedulable pod: %v, want a permanent 'not scheduled' refusal", err)
	}
	if _, err := cl.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	// A warm pod that fails (its container exited) is gone for its loop:
	// the extension says so, the release records how it ended.
	id = uuid.NewString()
	lost.Apps = apps
	if _, err := cl.Reserve(ctx, activities.HostReservation{LeaseID: id, App: "shop", MemoryMB: 64, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Shadow(ctx, id, 0, 0); err != nil {
		t.Fatal(err)
	}
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, kube.PodName(id), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Error", "exit code 3"
	if _, err := c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Extend(ctx, id, "shop", time.Minute); err == nil || !lost.NotFound(err) {
		t.Errorf("extend of a failed pod: %v, want gone", err)
	}
	if rel, err := cl.Release(ctx, id); err != nil || rel.Released || rel.State != "failed" || !strings.Contains(rel.Note, "exit code 3") {
		t.Errorf("release of a failed pod: %+v %v, want failed with its reason", rel, err)
	}
	kubetest.Gone(t, c.Client, ns, kube.PodName(id), 30*time.Second)

	// A lease on a URL that is not this cluster's node is refused.
	if _, err := lost.For(node, "http://10.0.0.1:7071").Reserve(ctx, activities.HostReservation{LeaseID: uuid.NewString(), App: "shop", TTL: time.Minute}); err == nil || !lost.Permanent(err) {
		t.Errorf("reserve on a foreign URL: %v, want a permanent refusal", err)
	}
	kubetest.Eventually(t, 30*time.Second, "no warm pod left", func() (bool, error) { return len(kubetest.WarmPods(t, c.Client, ns)) == 0, nil })
}

// TestKnativeWindow: for an application served by Knative, a lease is the
// Service's min-scale (set on reserve, counted per open window, removed
// with the last); the shadow request goes to the Service's URL once
// Knative reports it Ready; the janitor closes expired windows.
func TestKnativeWindow(t *testing.T) {
	c := kubetest.New(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	c.InstallKnativeCRD(t)
	dyn := dynamic.NewForConfigOrDie(c.Admin)
	port := 18000 + int(uuid.New().ID()%1000)
	c.StandIn(t, port)
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.knative.dev/v1", "kind": "Service",
		"metadata": map[string]any{"name": "hello", "namespace": ns},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"image": "registry.example/hello:1"}}}}},
	}}
	res := dyn.Resource(kube.KnativeServices).Namespace(ns)
	created, err := res.Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What Knative's controller would write: the URL (here the stand-in
	// in the pods' namespace) and Ready.
	_ = unstructured.SetNestedField(created.Object, fmt.Sprintf("http://10.250.0.250:%d", port), "status", "url")
	_ = unstructured.SetNestedSlice(created.Object, []any{map[string]any{"type": "Ready", "status": "True"}}, "status", "conditions")
	if _, err := res.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	app := kube.App{App: "hello", Namespace: ns, KnativeService: "hello", Ready: appspec.Duration(10 * time.Second),
		Shadow: appspec.Shadow{Path: "/healthz", MaxLatency: appspec.Duration(time.Second)}}
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	d := &kube.Driver{Client: c.Client, Dynamic: dyn, Apps: map[string]kube.App{"hello": app}}
	cl := d.For("any", kube.URLScheme+"any")
	minScale := func() string {
		s, err := res.Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v, _, _ := unstructured.NestedString(s.Object, "spec", "template", "metadata", "annotations", kube.MinScale)
		return v
	}
	a, b := uuid.NewString(), uuid.NewString()
	for _, id := range []string{a, b} {
		if _, err := cl.Reserve(ctx, activities.HostReservation{LeaseID: id, App: "hello", TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if got := minScale(); got != "2" {
		t.Errorf("min-scale %q with two windows open, want 2", got)
	}
	if ms, err := cl.Shadow(ctx, a, 0, 0); err != nil {
		t.Fatalf("shadow to the Service's URL: %v", err)
	} else {
		t.Logf("shadow to the Knative Service answered in %.1f ms", ms)
	}
	if _, err := cl.Extend(ctx, a, "hello", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Release(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := minScale(); got != "1" {
		t.Errorf("min-scale %q after one release, want 1", got)
	}
	time.Sleep(2100 * time.Millisecond)
	if n, err := (&kube.Janitor{Driver: d}).Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("janitor: %d closed, %v; want the expired window closed", n, err)
	}
	if got := minScale(); got != "" {
		t.Errorf("min-scale %q after the last window expired, want it removed", got)
	}
	if _, err := cl.Release(ctx, a); err == nil || !d.NotFound(err) {
		t.Errorf("release of an expired window: %v, want not found", err)
	}
}
