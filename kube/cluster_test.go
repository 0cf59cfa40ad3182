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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/appspec"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/kube"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/worker/adapters"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveInstApp()
	os.Exit(code)
}

// cluster is the test control plane (deploy/local/kube.sh) and the
// network namespace its pods' addresses live in.
type cluster struct {
	admin  *rest.Config
	client kubernetes.Interface
	netns  string
}

func testCluster(t *testing.T) cluster {
	t.Helper()
	path := os.Getenv("FOREWARM_KUBECONFIG")
	netns := os.Getenv("FOREWARM_KUBE_NETNS")
	if path == "" || netns == "" {
		testenv.Missing(t, "a Kubernetes control plane", fmt.Errorf("FOREWARM_KUBECONFIG and FOREWARM_KUBE_NETNS are not set (`make test-k8s` starts one and sets them)"))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		testenv.Missing(t, "a Kubernetes control plane", err)
	}
	c := kubernetes.NewForConfigOrDie(cfg)
	if _, err := c.Discovery().ServerVersion(); err != nil {
		testenv.Missing(t, "a Kubernetes control plane", err)
	}
	return cluster{admin: cfg, client: c, netns: netns}
}

// namespace makes a namespace with Pod Security baseline enforced and
// deletes it (and all in it) at the end.
func (c cluster) namespace(t *testing.T) string {
	t.Helper()
	name := "fw-" + strings.ToLower(uuid.NewString()[:8])
	_, err := c.client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// node makes a kwok node with memMB of memory and cpu cores, labelled
// pool, and waits for it to turn Ready.
func (c cluster) node(t *testing.T, pool string, memMB int64, cpu int64) string {
	t.Helper()
	name := pool + "-" + strings.ToLower(uuid.NewString()[:6])
	alloc := corev1.ResourceList{
		corev1.ResourceMemory:           *resource.NewQuantity(memMB<<20, resource.BinarySI),
		corev1.ResourceCPU:              *resource.NewQuantity(cpu, resource.DecimalSI),
		corev1.ResourcePods:             *resource.NewQuantity(110, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(10<<30, resource.BinarySI),
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"forewarm.io/pool": pool, "type": "kwok"},
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
		Status: corev1.NodeStatus{Capacity: alloc, Allocatable: alloc}}
	if _, err := c.client.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	eventually(t, 60*time.Second, "node "+name+" Ready", func() (bool, error) {
		got, err := c.client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	return name
}

// standIn runs the test application inside the pods' network namespace on
// port: every pod address answers with it.
func (c cluster) standIn(t *testing.T, port int) {
	t.Helper()
	bin := testenv.InstApp(t)
	cmd := exec.Command("ip", "netns", "exec", c.netns, bin, "-host", "0.0.0.0")
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

func eventually(t *testing.T, within time.Duration, what string, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		ok, err := f()
		if ok {
			return
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (last error: %v)", what, within, last)
}

// driverIdentity is the worker's service account with the roles of
// deploy/kubernetes/components/kube-driver, granted in ns: the driver
// under test runs with nothing more.
func (c cluster) driverIdentity(t *testing.T, ns string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	sa := "forewarm-worker"
	if _, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "deploy", "kubernetes", "components", "kube-driver")
	var clusterRole rbacv1.ClusterRole
	var role rbacv1.Role
	readFirst(t, filepath.Join(dir, "cluster-role.yaml"), &clusterRole)
	readFirst(t, filepath.Join(dir, "role.yaml"), &role)
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}
	clusterRole.Name = "forewarm-driver-" + ns
	if _, err := c.client.RbacV1().ClusterRoles().Create(ctx, &clusterRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterRole.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole.Name}}
	if _, err := c.client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.client.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
		_ = c.client.RbacV1().ClusterRoles().Delete(context.Background(), clusterRole.Name, metav1.DeleteOptions{})
	})
	role.Namespace = ns
	if _, err := c.client.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name}}
	if _, err := c.client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.admin)
	cfg.BearerToken = tok.Status.Token
	return cfg
}

// readFirst decodes the first YAML document of path into v.
func readFirst(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc, _, _ := strings.Cut(string(b), "\n---")
	if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// noModels is a registry with no affinity champion: the scorer ranks with
// the heuristic (affinity.Default), as a worker does before training.
type noModels struct{}

func (noModels) ChampionVersion(context.Context, string) (string, error) { return "", store.ErrNoModel }
func (noModels) Model(context.Context, string) (store.ModelRecord, error) {
	return store.ModelRecord{}, store.ErrNoModel
}

// shop deploys an application the way a user has it: a Deployment (scaled
// to zero) and a Service selecting its pods.
func shop(t *testing.T, c kubernetes.Interface, ns string, port int) *appsv1.Deployment {
	t.Helper()
	ctx := context.Background()
	zero := int32(0)
	lbl := map[string]string{"app": "shop"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "shop", Image: "registry.example/shop:1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}},
					Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}}}}}}
	dep, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: lbl, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
	if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return dep
}

func shopApp(ns string, port int) kube.App {
	a := kube.App{App: "shop", Namespace: ns, Deployment: "shop", Port: port, Ready: appspec.Duration(30 * time.Second),
		Shadow: appspec.Shadow{Method: "POST", Path: "/shadow", Body: `{"x":1}`, MaxLatency: appspec.Duration(time.Second)}}
	if err := a.Validate(); err != nil {
		panic(err)
	}
	return a
}

func warmPods(t *testing.T, c kubernetes.Interface, ns string) []corev1.Pod {
	t.Helper()
	l, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=" + kube.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func gone(t *testing.T, c kubernetes.Interface, ns, name string, within time.Duration) {
	t.Helper()
	eventually(t, within, "pod "+name+" deleted", func() (bool, error) {
		_, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
}

// TestWarmPodLifecycle: ranked on the cluster's nodes, a lease becomes a
// pod of the application's own template on the best node; its shadow
// request reaches the pod; the Service's endpoints include it; extension
// keeps the pod; release deletes it; the driver runs as the worker's
// service account with the shipped roles only.
func TestWarmPodLifecycle(t *testing.T) {
	c := testCluster(t)
	ns := c.namespace(t)
	pool := "pool-" + ns
	big := c.node(t, pool, 8192, 4)
	small := c.node(t, pool, 1024, 4)
	port := 18000 + int(uuid.New().ID()%1000)
	c.standIn(t, port)
	shop(t, c.client, ns, port)

	cfg := c.driverIdentity(t, ns)
	d := &kube.Driver{Client: kubernetes.NewForConfigOrDie(cfg), Apps: map[string]kube.App{"shop": shopApp(ns, port)},
		Nodes: labels.SelectorFromSet(labels.Set{"forewarm.io/pool": pool})}
	hosts := &activities.Hosts{Directory: d, Clients: d, Log: slog.Default(),
		Affinity: &adapters.AffinityScorer{Src: noModels{}, CheckEvery: time.Hour, Log: slog.Default()}}
	ctx := context.Background()

	ranked, err := hosts.RankHosts(ctx, activities.RankInput{Profile: activities.AppProfile{App: "shop", MemoryMB: 256, DiskMB: 64, CPUMilli: 250}})
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
	if _, err := hosts.Reserve(ctx, activities.ReserveInput{LeaseID: lease, App: "shop", Candidate: best, MemoryMB: 256, DiskMB: 64, CPUMilli: 250, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// A retried reserve (lost reply) finds the same pod.
	if _, err := hosts.Reserve(ctx, activities.ReserveInput{LeaseID: lease, App: "shop", Candidate: best, MemoryMB: 256, TTL: time.Minute}); err != nil {
		t.Fatalf("retried reserve: %v", err)
	}
	sh, err := hosts.Shadow(ctx, activities.ShadowInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL, MaxMS: 30_000})
	if err != nil || !sh.OK {
		t.Fatalf("shadow: %+v %v", sh, err)
	}
	t.Logf("ready and shadow answered in %.1f ms", sh.ShadowMS)
	pod, err := c.client.CoreV1().Pods(ns).Get(ctx, kube.PodName(lease), metav1.GetOptions{})
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
	eventually(t, 30*time.Second, "the Service's endpoints include the warm pod", func() (bool, error) {
		l, err := c.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=shop"})
		if err != nil {
			return false, err
		}
		for _, s := range l.Items {
			for _, e := range s.Endpoints {
				if e.TargetRef != nil && e.TargetRef.Name == pod.Name && len(e.Addresses) > 0 && e.Addresses[0] == pod.Status.PodIP &&
					e.Conditions.Ready != nil && *e.Conditions.Ready {
					return true, nil
				}
			}
		}
		return false, nil
	})
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
	for _, h := range live {
		if h.ID == big && h.FreeMemMB != 8192-256 {
			t.Errorf("free memory on %s %.0f MB, want 8192-256", big, h.FreeMemMB)
		}
	}

	ext, err := hosts.Extend(ctx, activities.ExtendInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL, TTL: 5 * time.Minute})
	if err != nil || !ext.Extended {
		t.Fatalf("extend: %+v %v", ext, err)
	}
	after, err := c.client.CoreV1().Pods(ns).Get(ctx, kube.PodName(lease), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != pod.UID {
		t.Errorf("extension replaced the pod (%s → %s)", pod.UID, after.UID)
	}
	if until, _ := time.Parse(time.RFC3339Nano, after.Annotations[kube.AnnotationUntil]); until.Sub(ext.Expires).Abs() > time.Millisecond || time.Until(until) < 4*time.Minute {
		t.Errorf("expiry annotation %q, want the extension's %s", after.Annotations[kube.AnnotationUntil], ext.Expires)
	}

	rel, err := hosts.Release(ctx, activities.ReleaseInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL})
	if err != nil || !rel.WasHeld {
		t.Fatalf("release: %+v %v", rel, err)
	}
	gone(t, c.client, ns, pod.Name, 30*time.Second)
	// Released twice (a retry): the lease is known gone, not an error.
	if rel, err := hosts.Release(ctx, activities.ReleaseInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL}); err != nil || rel.WasHeld {
		t.Fatalf("second release: %+v %v", rel, err)
	}
	if ext, err := hosts.Extend(ctx, activities.ExtendInput{LeaseID: lease, App: "shop", Host: best.Host, HostURL: best.URL, TTL: time.Minute}); err != nil || !ext.Gone {
		t.Fatalf("extend after release: %+v %v, want gone", ext, err)
	}
	if left := warmPods(t, c.client, ns); len(left) != 0 {
		t.Errorf("%d warm pods left", len(left))
	}
}

// TestJanitorAndOwnerCleanUp: leases of a worker that died (never
// released) are deleted by another worker's janitor within one TTL; the
// application's deletion deletes its warm pods (owner references); an
// unschedulable lease is refused with the scheduler's reason.
func TestJanitorAndOwnerCleanUp(t *testing.T) {
	c := testCluster(t)
	ns := c.namespace(t)
	pool := "pool-" + ns
	node := c.node(t, pool, 2048, 2)
	port := 18000 + int(uuid.New().ID()%1000)
	c.standIn(t, port)
	shop(t, c.client, ns, port)
	apps := map[string]kube.App{"shop": shopApp(ns, port)}
	sel := labels.SelectorFromSet(labels.Set{"forewarm.io/pool": pool})
	ctx := context.Background()

	// The worker that dies: two leases of 3 s, never released.
	lost := &kube.Driver{Client: c.client, Apps: apps, Nodes: sel}
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
	janitor := &kube.Janitor{Driver: &kube.Driver{Client: c.client, Apps: apps, Nodes: sel}, Every: 500 * time.Millisecond}
	go janitor.Run(jctx)
	for _, n := range names {
		gone(t, c.client, ns, n, 2*ttl)
	}
	t.Logf("expired warm pods deleted %.1f s after they were made (TTL %s)", time.Since(start).Seconds(), ttl)
	stop()

	// Owner references: deleting the application deletes its warm pods.
	id := uuid.NewString()
	if _, err := lost.For(node, kube.URLScheme+node).Reserve(ctx, activities.HostReservation{LeaseID: id, App: "shop", MemoryMB: 128, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	bg := metav1.DeletePropagationBackground
	if err := c.client.AppsV1().Deployments(ns).Delete(ctx, "shop", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	gone(t, c.client, ns, kube.PodName(id), 60*time.Second)

	// More than the node holds: the scheduler's reason reaches the loop.
	shop(t, c.client, ns, port)
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
	// A lease on a URL that is not this cluster's node is refused.
	if _, err := lost.For(node, "http://10.0.0.1:7071").Reserve(ctx, activities.HostReservation{LeaseID: uuid.NewString(), App: "shop", TTL: time.Minute}); err == nil || !lost.Permanent(err) {
		t.Errorf("reserve on a foreign URL: %v, want a permanent refusal", err)
	}
	eventually(t, 30*time.Second, "no warm pod left", func() (bool, error) { return len(warmPods(t, c.client, ns)) == 0, nil })
}

// TestKnativeWindow: for an application served by Knative, a lease is the
// Service's min-scale (set on reserve, counted per open window, removed
// with the last); the shadow request goes to the Service's URL once
// Knative reports it Ready; the janitor closes expired windows.
func TestKnativeWindow(t *testing.T) {
	c := testCluster(t)
	ns := c.namespace(t)
	ctx := context.Background()
	installKnativeCRD(t, c)
	dyn := dynamic.NewForConfigOrDie(c.admin)
	port := 18000 + int(uuid.New().ID()%1000)
	c.standIn(t, port)
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
	d := &kube.Driver{Client: c.client, Dynamic: dyn, Apps: map[string]kube.App{"hello": app}}
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

// installKnativeCRD registers Knative Serving's Service kind (schema left
// open, status a subresource): the API a Knative cluster serves, without
// its controllers.
func installKnativeCRD(t *testing.T, c cluster) {
	t.Helper()
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "services.serving.knative.dev"},
		"spec": map[string]any{
			"group": "serving.knative.dev", "scope": "Namespaced",
			"names": map[string]any{"plural": "services", "singular": "service", "kind": "Service", "shortNames": []any{"ksvc"}},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema":       map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	dyn := dynamic.NewForConfigOrDie(c.admin)
	_, err := dyn.Resource(gvr).Create(context.Background(), crd, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the Knative Service kind served", func() (bool, error) {
		_, err := dyn.Resource(kube.KnativeServices).Namespace("default").List(context.Background(), metav1.ListOptions{})
		return err == nil, err
	})
}
