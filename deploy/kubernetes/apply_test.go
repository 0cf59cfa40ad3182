//go:build k8s

// Every overlay applied to a real API server (`make test-k8s` starts one).

package kubernetes_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/forewarm/forewarm/internal/testenv"
)

// warnings keeps what the API server warned of (Pod Security's warnings
// on workloads come back this way: it enforces on pods only).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// TestOverlaysApplyDryRunServer is `kubectl apply --dry-run=server` of
// every overlay, alone and with each component but the ServiceMonitor
// (whose CRD such a cluster lacks), into a namespace with Pod Security
// "restricted" enforced and warned: every object must be accepted, and
// no workload warned of.
func TestOverlaysApplyDryRunServer(t *testing.T) {
	path := os.Getenv("FOREWARM_KUBECONFIG")
	if path == "" {
		testenv.Missing(t, "a Kubernetes control plane", fmt.Errorf("FOREWARM_KUBECONFIG is not set (`make test-k8s` starts one and sets it)"))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		testenv.Missing(t, "a Kubernetes control plane", err)
	}
	warned := &warnings{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = warned
	cs := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	ctx := context.Background()

	made := map[string]bool{}
	ensure := func(name string, restricted bool) {
		if made[name] {
			return
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if restricted {
			ns.Labels = map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}
		}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatalf("namespace %s: %v", name, err)
		}
		made[name] = true
		t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	overlays := overlayDirs(t)
	for _, o := range overlays {
		for _, component := range []string{"", "kube-driver"} {
			name := o.Name()
			dir := "overlays/" + name
			if component != "" {
				name += "+" + component
				dir = withComponent(t, o.Name(), component)
			}
			t.Run(name, func(t *testing.T) {
				objs := renderObjects(t, dir)
				// Namespaces are made for real (a dry-run one would hold
				// nothing), Forewarm's restricted; all are deleted at the
				// end of the whole test.
				for _, u := range objs {
					switch {
					case u.GetKind() == "Namespace":
						ensure(u.GetName(), true)
					case u.GetNamespace() != "":
						ensure(u.GetNamespace(), false) // the driver's example Role is in "apps"
					}
				}
				warned.take()
				applied := 0
				for _, u := range objs {
					if u.GetKind() == "Namespace" {
						continue
					}
					m, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
					if err != nil {
						t.Errorf("%s %s: the API server does not serve it: %v", u.GetKind(), u.GetName(), err)
						continue
					}
					var r dynamic.ResourceInterface = dyn.Resource(m.Resource)
					if u.GetNamespace() != "" {
						r = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
					}
					_, err = r.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "forewarm-test"})
					if apierrors.IsAlreadyExists(err) { // cluster-wide objects another subtest made: update instead
						cur, gerr := r.Get(ctx, u.GetName(), metav1.GetOptions{})
						if gerr == nil {
							u.SetResourceVersion(cur.GetResourceVersion())
							_, err = r.Update(ctx, u, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "forewarm-test"})
						}
					}
					if err != nil {
						t.Errorf("%s %s: refused: %v", u.GetKind(), u.GetName(), err)
						continue
					}
					applied++
				}
				var w []string
				for _, m := range warned.take() {
					// The mTLS overlay's certificate files are placeholders
					// the user replaces (overlays/*/secrets): not PEM yet.
					if strings.HasPrefix(o.Name(), "temporal-cloud-mtls") && strings.Contains(m, "failed to find any PEM data") {
						continue
					}
					w = append(w, m)
				}
				if len(w) > 0 {
					t.Errorf("the API server warned: %s", strings.Join(w, "; "))
				}
				t.Logf("%d objects accepted", applied)
			})
		}
	}
}
