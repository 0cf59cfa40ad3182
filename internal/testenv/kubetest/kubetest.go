// Package kubetest stands up what the Kubernetes tests need on the test
// control plane (deploy/local/kube.sh): namespaces, kwok nodes, the test
// application inside the pods' network namespace, an application's
// Deployment and Service, the driver's service account with the shipped
// roles, and Knative's Service kind.
package kubetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/kube"
)

// root is the repository's folder (this file is internal/testenv/kubetest).
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Cluster is the test control plane (deploy/local/kube.sh) and the
// network namespace its pods' addresses live in.
type Cluster struct {
	Admin  *rest.Config
	Client kubernetes.Interface
	NetNS  string
}

func New(t *testing.T) Cluster {
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
	return Cluster{Admin: cfg, Client: c, NetNS: netns}
}

// Namespace makes a namespace with Pod Security baseline enforced and
// deletes it (and all in it) at the end.
func (c Cluster) Namespace(t *testing.T) string {
	t.Helper()
	name := "fw-" + strings.ToLower(uuid.NewString()[:8])
	_, err := c.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// Node makes a kwok node with memMB of memory and cpu cores, labelled
// pool, and waits for it to turn Ready.
func (c Cluster) Node(t *testing.T, pool string, memMB int64, cpu int64) string {
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
	if _, err := c.Client.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	Eventually(t, 60*time.Second, "node "+name+" Ready", func() (bool, error) {
		got, err := c.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
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

// StandIn runs the test application inside the pods' network namespace on
// port: every pod address answers with it.
func (c Cluster) StandIn(t *testing.T, port int) {
	t.Helper()
	bin := testenv.InstApp(t)
	cmd := exec.Command("ip", "netns", "exec", c.NetNS, bin, "-host", "0.0.0.0")
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

func Eventually(t *testing.T, within time.Duration, what string, f func() (bool, error)) {
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

// DriverIdentity is the worker's service account with the roles of
// deploy/kubernetes/components/kube-driver, granted in ns: the driver
// under test runs with nothing more.
func (c Cluster) DriverIdentity(t *testing.T, ns string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	sa := "forewarm-worker"
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root(), "deploy", "kubernetes", "components", "kube-driver")
	var clusterRole rbacv1.ClusterRole
	var role rbacv1.Role
	readFirst(t, filepath.Join(dir, "cluster-role.yaml"), &clusterRole)
	readFirst(t, filepath.Join(dir, "role.yaml"), &role)
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}
	clusterRole.Name = "forewarm-driver-" + ns
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &clusterRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterRole.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole.Name}}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
		_ = c.Client.RbacV1().ClusterRoles().Delete(context.Background(), clusterRole.Name, metav1.DeleteOptions{})
	})
	role.Namespace = ns
	if _, err := c.Client.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name}}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Admin)
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

// Shop deploys an application the way a user has it: a Deployment (scaled
// to zero) and a Service selecting its pods.
func Shop(t *testing.T, c kubernetes.Interface, ns string, port int) *appsv1.Deployment {
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

func WarmPods(t *testing.T, c kubernetes.Interface, ns string) []corev1.Pod {
	t.Helper()
	l, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=" + kube.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func Gone(t *testing.T, c kubernetes.Interface, ns, name string, within time.Duration) {
	t.Helper()
	Eventually(t, within, "pod "+name+" deleted", func() (bool, error) {
		_, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
}

// InstallKnativeCRD registers Knative Serving's Service kind (schema left
// open, status a subresource): the API a Knative cluster serves, without
// its controllers.
func (c Cluster) InstallKnativeCRD(t *testing.T) {
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
	dyn := dynamic.NewForConfigOrDie(c.Admin)
	_, err := dyn.Resource(gvr).Create(context.Background(), crd, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, "the Knative Service kind served", func() (bool, error) {
		_, err := dyn.Resource(kube.KnativeServices).Namespace("default").List(context.Background(), metav1.ListOptions{})
		return err == nil, err
	})
}

// EndpointsInclude waits for the Service's EndpointSlices to list pod, at
// its address and ready.
func EndpointsInclude(t *testing.T, c kubernetes.Interface, ns, service string, pod *corev1.Pod) {
	t.Helper()
	Eventually(t, 30*time.Second, "the Service's endpoints include "+pod.Name, func() (bool, error) {
		l, err := c.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
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
}
