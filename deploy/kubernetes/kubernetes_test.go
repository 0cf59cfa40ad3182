// Package kubernetes_test renders every overlay of deploy/kubernetes with
// kustomize (its Go library, what `kubectl kustomize` runs), decodes every object strictly into the Kubernetes
// API types (an unknown field is an error) and checks what a cluster would
// only report at run time: references to ConfigMaps, Secrets and their
// keys, labels and selectors, named ports, the settings every program
// reads, and the shutdown and capacity rules the deployment relies on. It
// also runs every pod template through the Pod Security admission checks.
package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	psapi "k8s.io/pod-security-admission/api"
	pspolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/kube"
	"github.com/forewarm/forewarm/store/chconn"
)

const namespace = "forewarm"

// The images, registry-qualified (base/kustomization.yaml).
const (
	workerImage = "ghcr.io/forewarm/worker:"
	agentImage  = "ghcr.io/forewarm/hostagent:"
)

// migrateJob is the migration Job's name: a Job's pod template is
// immutable, so a new schema version must be a new Job.
var migrateJob = fmt.Sprintf("forewarm-migrate-v%d", chconn.SchemaVersion)

// loopsPerGiB bounds the workflow cache: a cached loop costs ~110 KB
// (docs/scale.md), and half of the memory limit stays for the rest.
const loopsPerGiB = 4000

// longestPredictionActivity is the longest start-to-close timeout of the
// prediction queue's activities (workflows/loop.go, prepare.go, request.go):
// a stopping worker must be allowed to finish one.
const longestPredictionActivity = 30 * time.Second

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// the manifests use (its CRD is not in k8s.io/api); decoded as strictly.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port              string                    `json:"port"`
			Path              string                    `json:"path"`
			Interval          string                    `json:"interval"`
			BearerTokenSecret *corev1.SecretKeySelector `json:"bearerTokenSecret,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the Prometheus Operator's PrometheusRule: its groups
// are a rule file's (compared with deploy/prometheus/alerts.yaml).
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []any `json:"groups"`
	} `json:"spec"`
}

// reporter is where the checks report (a *testing.T, or a collector in
// the test that proves they catch a broken reference).
type reporter interface {
	Errorf(format string, args ...any)
}

type rendered struct {
	overlay         string
	namespaces      map[string]*corev1.Namespace
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	services        map[string]*corev1.Service
	deployments     map[string]*appsv1.Deployment
	daemonSets      map[string]*appsv1.DaemonSet
	jobs            map[string]*batchv1.Job
	pdbs            map[string]*policyv1.PodDisruptionBudget
	priorityClasses map[string]*schedulingv1.PriorityClass
	serviceMonitors map[string]*serviceMonitor
	prometheusRules map[string]*prometheusRule
	// The driver's identity (components/kube-driver), by kind/name.
	rbac map[string]any
}

// workload is a pod template with its owner's name and kind.
type workload struct {
	kind, name string
	selector   map[string]string
	pod        *corev1.PodTemplateSpec
}

func (r *rendered) workloads() []workload {
	var out []workload
	for _, n := range slices.Sorted(maps.Keys(r.deployments)) {
		d := r.deployments[n]
		out = append(out, workload{"Deployment", n, d.Spec.Selector.MatchLabels, &d.Spec.Template})
	}
	for _, n := range slices.Sorted(maps.Keys(r.daemonSets)) {
		d := r.daemonSets[n]
		out = append(out, workload{"DaemonSet", n, d.Spec.Selector.MatchLabels, &d.Spec.Template})
	}
	for _, n := range slices.Sorted(maps.Keys(r.jobs)) {
		j := r.jobs[n]
		out = append(out, workload{"Job", n, nil, &j.Spec.Template})
	}
	return out
}

// strict decodes JSON into v, refusing unknown fields.
func strict(doc []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// renderObjects renders the kustomization in dir with kustomize's own
// library (what `kubectl kustomize` runs; no kubectl needed) into the
// objects `kubectl apply` would send, in kustomize's order.
func renderObjects(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for i, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: object %d is not YAML: %v", dir, i, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatalf("%s: object %d: %v", dir, i, err)
		}
		objs = append(objs, u)
	}
	return objs
}

// overlayDirs lists the overlays (at least the three shipped).
func overlayDirs(t *testing.T) []os.DirEntry {
	t.Helper()
	overlays, err := os.ReadDir("overlays")
	if err != nil || len(overlays) < 3 {
		t.Fatalf("overlays: %v (%d)", err, len(overlays))
	}
	return overlays
}

func render(t *testing.T, overlay string) *rendered {
	t.Helper()
	return renderDir(t, overlay, filepath.Join("overlays", overlay))
}

// renderDir renders dir and decodes every object strictly by its kind.
func renderDir(t *testing.T, overlay, dir string) *rendered {
	t.Helper()
	r := &rendered{overlay: overlay, namespaces: map[string]*corev1.Namespace{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, services: map[string]*corev1.Service{}, deployments: map[string]*appsv1.Deployment{},
		daemonSets: map[string]*appsv1.DaemonSet{}, jobs: map[string]*batchv1.Job{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		priorityClasses: map[string]*schedulingv1.PriorityClass{}, serviceMonitors: map[string]*serviceMonitor{},
		prometheusRules: map[string]*prometheusRule{}, rbac: map[string]any{}}
	want := map[string]string{"Namespace": "v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1", "Deployment": "apps/v1",
		"DaemonSet": "apps/v1", "Job": "batch/v1", "PodDisruptionBudget": "policy/v1", "PriorityClass": "scheduling.k8s.io/v1",
		"ServiceMonitor": "monitoring.coreos.com/v1", "PrometheusRule": "monitoring.coreos.com/v1", "ServiceAccount": "v1", "ClusterRole": "rbac.authorization.k8s.io/v1",
		"ClusterRoleBinding": "rbac.authorization.k8s.io/v1", "Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1"}
	for i, u := range renderObjects(t, dir) {
		j, err := u.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: object %d: %v", overlay, i, err)
		}
		tm := metav1.TypeMeta{Kind: u.GetKind(), APIVersion: u.GetAPIVersion()}
		if want[tm.Kind] == "" {
			t.Errorf("%s: object %d has kind %q, which this test does not know: add its checks", overlay, i, tm.Kind)
			continue
		}
		if tm.APIVersion != want[tm.Kind] {
			t.Errorf("%s: %s has apiVersion %s, want %s", overlay, tm.Kind, tm.APIVersion, want[tm.Kind])
		}
		var obj interface{ GetName() string }
		switch tm.Kind {
		case "Namespace":
			o := &corev1.Namespace{}
			obj, r.namespaces = o, with(r.namespaces, o)
		case "ConfigMap":
			o := &corev1.ConfigMap{}
			obj, r.configMaps = o, with(r.configMaps, o)
		case "Secret":
			o := &corev1.Secret{}
			obj, r.secrets = o, with(r.secrets, o)
		case "Service":
			o := &corev1.Service{}
			obj, r.services = o, with(r.services, o)
		case "Deployment":
			o := &appsv1.Deployment{}
			obj, r.deployments = o, with(r.deployments, o)
		case "DaemonSet":
			o := &appsv1.DaemonSet{}
			obj, r.daemonSets = o, with(r.daemonSets, o)
		case "Job":
			o := &batchv1.Job{}
			obj, r.jobs = o, with(r.jobs, o)
		case "PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			obj, r.pdbs = o, with(r.pdbs, o)
		case "PriorityClass":
			o := &schedulingv1.PriorityClass{}
			obj, r.priorityClasses = o, with(r.priorityClasses, o)
		case "ServiceMonitor":
			o := &serviceMonitor{}
			obj, r.serviceMonitors = o, with(r.serviceMonitors, o)
		case "PrometheusRule":
			o := &prometheusRule{}
			obj, r.prometheusRules = o, with(r.prometheusRules, o)
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			o := map[string]any{"ServiceAccount": &corev1.ServiceAccount{}, "ClusterRole": &rbacv1.ClusterRole{},
				"ClusterRoleBinding": &rbacv1.ClusterRoleBinding{}, "Role": &rbacv1.Role{}, "RoleBinding": &rbacv1.RoleBinding{}}[tm.Kind]
			obj, r.rbac[tm.Kind+"/"+u.GetName()] = o.(interface{ GetName() string }), o
		}
		if err := strict(j, obj); err != nil {
			t.Errorf("%s: %s: %v", overlay, tm.Kind, err)
		}
	}
	// Names are known only after decoding: re-key the maps.
	rekey(r.namespaces)
	rekey(r.configMaps)
	rekey(r.secrets)
	rekey(r.services)
	rekey(r.deployments)
	rekey(r.daemonSets)
	rekey(r.jobs)
	rekey(r.pdbs)
	rekey(r.priorityClasses)
	rekey(r.serviceMonitors)
	rekey(r.prometheusRules)
	return r
}

// with adds o under a placeholder key; rekey files it under its name.
func with[T any](m map[string]*T, o *T) map[string]*T {
	m[fmt.Sprintf("#%d", len(m))] = o
	return m
}

func rekey[T interface{ GetName() string }](m map[string]T) {
	for k, v := range m {
		delete(m, k)
		m[v.GetName()] = v
	}
}

// selects reports whether labels carry every pair of selector.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// env resolves what a container sees: explicit env over envFrom, later
// envFrom sources over earlier ones. source says where each came from.
type envVar struct {
	value  string // resolved when it is a literal or a ConfigMap entry
	source string // literal, configmap/<name>, secret/<name>, field, resource
}

func (r *rendered) env(t reporter, w workload, c *corev1.Container) map[string]envVar {
	out := map[string]envVar{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, ok := r.configMaps[ef.ConfigMapRef.Name]
			if !ok {
				if ef.ConfigMapRef.Optional == nil || !*ef.ConfigMapRef.Optional {
					t.Errorf("%s: %s %s container %s: envFrom ConfigMap %s does not exist", r.overlay, w.kind, w.name, c.Name, ef.ConfigMapRef.Name)
				}
				continue
			}
			for k, v := range cm.Data {
				out[ef.Prefix+k] = envVar{v, "configmap/" + cm.Name}
			}
		case ef.SecretRef != nil:
			s, ok := r.secrets[ef.SecretRef.Name]
			if !ok {
				t.Errorf("%s: %s %s container %s: envFrom Secret %s does not exist", r.overlay, w.kind, w.name, c.Name, ef.SecretRef.Name)
				continue
			}
			for k := range secretKeys(s) {
				out[ef.Prefix+k] = envVar{"", "secret/" + s.Name}
			}
		}
	}
	for _, e := range c.Env {
		switch vf := e.ValueFrom; {
		case vf == nil:
			out[e.Name] = envVar{e.Value, "literal"}
		case vf.ConfigMapKeyRef != nil:
			cm, ok := r.configMaps[vf.ConfigMapKeyRef.Name]
			if !ok || cm.Data[vf.ConfigMapKeyRef.Key] == "" && !slices.Contains(slices.Collect(maps.Keys(cm.Data)), vf.ConfigMapKeyRef.Key) {
				t.Errorf("%s: %s %s container %s: %s from ConfigMap %s key %s, which does not exist", r.overlay, w.kind, w.name, c.Name, e.Name, vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key)
				continue
			}
			out[e.Name] = envVar{cm.Data[vf.ConfigMapKeyRef.Key], "configmap/" + cm.Name}
		case vf.SecretKeyRef != nil:
			s, ok := r.secrets[vf.SecretKeyRef.Name]
			if !ok || !secretKeys(s)[vf.SecretKeyRef.Key] {
				t.Errorf("%s: %s %s container %s: %s from Secret %s key %s, which does not exist", r.overlay, w.kind, w.name, c.Name, e.Name, vf.SecretKeyRef.Name, vf.SecretKeyRef.Key)
				continue
			}
			out[e.Name] = envVar{"", "secret/" + s.Name}
		case vf.FieldRef != nil:
			out[e.Name] = envVar{"", "field"}
		case vf.ResourceFieldRef != nil:
			rf := vf.ResourceFieldRef
			target := c
			if rf.ContainerName != "" {
				target = container(w.pod, rf.ContainerName)
			}
			if target == nil {
				t.Errorf("%s: %s %s: %s refers to container %q, which does not exist", r.overlay, w.kind, w.name, e.Name, rf.ContainerName)
				continue
			}
			kind, res, _ := strings.Cut(rf.Resource, ".")
			list := target.Resources.Requests
			if kind == "limits" {
				list = target.Resources.Limits
			}
			if _, ok := list[corev1.ResourceName(res)]; !ok {
				t.Errorf("%s: %s %s: %s comes from %s, which container %s does not set", r.overlay, w.kind, w.name, e.Name, rf.Resource, target.Name)
			}
			out[e.Name] = envVar{"", "resource"}
		}
	}
	return out
}

func secretKeys(s *corev1.Secret) map[string]bool {
	out := map[string]bool{}
	for k := range s.Data {
		out[k] = true
	}
	for k := range s.StringData {
		out[k] = true
	}
	return out
}

func container(p *corev1.PodTemplateSpec, name string) *corev1.Container {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == name {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

func hasPort(c *corev1.Container, port string, number int32) bool {
	for _, p := range c.Ports {
		if (port != "" && p.Name == port) || (port == "" && p.ContainerPort == number) {
			return true
		}
	}
	return false
}

// programEnv lists the environment variables the non-test Go files of
// dirs read (string literals that name one).
func programEnv(t *testing.T, dirs ...string) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`"((?:TEMPORAL|CLICKHOUSE|FOREWARM|HOSTAGENT|ONNXRUNTIME)_[A-Z0-9_]+)"`)
	out := map[string]bool{}
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join("..", "..", d, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s (%v)", d, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range re.FindAllSubmatch(b, -1) {
				// Old names are still read, with a warning: the
				// manifests must use the standard ones instead.
				if _, old := config.DeprecatedTemporalEnv[string(m[1])]; !old {
					out[string(m[1])] = true
				}
			}
		}
	}
	return out
}

func TestOverlaysRenderAndCrossReference(t *testing.T) {
	workerEnv := programEnv(t, "worker", "internal/config")
	agentEnv := programEnv(t, "hostagent")
	for k := range workerEnv {
		if strings.HasPrefix(k, "CLICKHOUSE_") {
			agentEnv[k] = true // the agent registers config.ClickHouse's flags
		}
	}
	if len(workerEnv) < 15 || !agentEnv["HOSTAGENT_TOKEN"] {
		t.Fatalf("the programs' settings were not found: worker %v, agent %v", workerEnv, agentEnv)
	}
	overlays := overlayDirs(t)
	for _, o := range overlays {
		t.Run(o.Name(), func(t *testing.T) {
			r := render(t, o.Name())
			// Without the Prometheus Operator's CRD a ServiceMonitor fails
			// the whole apply: it is an opt-in component.
			if len(r.serviceMonitors) > 0 || len(r.prometheusRules) > 0 {
				t.Errorf("%s includes ServiceMonitors %v or PrometheusRules %v: leave components/servicemonitor to the operator's overlay", o.Name(),
					slices.Sorted(maps.Keys(r.serviceMonitors)), slices.Sorted(maps.Keys(r.prometheusRules)))
			}
			checkObjects(t, r)
			checkWorkloads(t, r, workerEnv, agentEnv)
			checkServices(t, r)
			switch o.Name() {
			case "temporal-cloud":
				for _, c := range []string{"forewarm-worker/worker", "forewarm-trainer/trainer"} {
					d, cn, _ := strings.Cut(c, "/")
					w := workload{"Deployment", d, nil, &r.deployments[d].Spec.Template}
					if e := r.env(t, w, container(w.pod, cn)); e["TEMPORAL_API_KEY"].source != "secret/forewarm-temporal-cloud" {
						t.Errorf("%s: TEMPORAL_API_KEY from %q, want the forewarm-temporal-cloud Secret", c, e["TEMPORAL_API_KEY"].source)
					}
				}
			case "temporal-cloud-mtls":
				for _, c := range []string{"forewarm-worker/worker", "forewarm-trainer/trainer"} {
					d, cn, _ := strings.Cut(c, "/")
					w := workload{"Deployment", d, nil, &r.deployments[d].Spec.Template}
					ctr := container(w.pod, cn)
					e := r.env(t, w, ctr)
					for _, k := range []string{"TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH"} {
						if !mountedSecretFile(w.pod, ctr, e[k].value, "forewarm-temporal-tls") {
							t.Errorf("%s: %s=%q is not a file of the mounted forewarm-temporal-tls Secret", c, k, e[k].value)
						}
					}
				}
			}
		})
	}
}

// mountedSecretFile: path is key file of secret mounted into c.
func mountedSecretFile(p *corev1.PodTemplateSpec, c *corev1.Container, path, secret string) bool {
	for _, m := range c.VolumeMounts {
		for _, v := range p.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == secret && filepath.Dir(path) == m.MountPath {
				return true
			}
		}
	}
	return false
}

func checkObjects(t reporter, r *rendered) {
	if _, ok := r.namespaces[namespace]; !ok {
		t.Errorf("no Namespace %s", namespace)
	}
	check := func(kind string, m metav1.Object) {
		if m.GetNamespace() != namespace {
			t.Errorf("%s %s is in namespace %q, want %s", kind, m.GetName(), m.GetNamespace(), namespace)
		}
		if m.GetLabels()["app.kubernetes.io/part-of"] != "forewarm" {
			t.Errorf("%s %s lacks the app.kubernetes.io/part-of label", kind, m.GetName())
		}
	}
	for _, o := range r.configMaps {
		check("ConfigMap", o)
	}
	for _, o := range r.secrets {
		check("Secret", o)
	}
	for _, o := range r.services {
		check("Service", o)
	}
	for _, o := range r.deployments {
		check("Deployment", o)
	}
	for _, o := range r.daemonSets {
		check("DaemonSet", o)
	}
	for _, o := range r.jobs {
		check("Job", o)
	}
	for _, o := range r.pdbs {
		check("PodDisruptionBudget", o)
	}
	for _, o := range r.serviceMonitors {
		check("ServiceMonitor", o)
	}
	for _, o := range r.priorityClasses {
		if o.Namespace != "" {
			t.Errorf("PriorityClass %s has namespace %q: it is cluster-scoped", o.Name, o.Namespace)
		}
		if o.GlobalDefault {
			t.Errorf("PriorityClass %s is the cluster's default: it would apply to every pod", o.Name)
		}
	}
	for _, n := range []string{"forewarm-worker", "forewarm-trainer"} {
		if r.deployments[n] == nil {
			t.Errorf("no Deployment %s", n)
		}
	}
	// The agents hold the warm instances unless the worker runs the
	// Kubernetes driver (components/kube-driver), which needs none.
	driver := ""
	if w := r.deployments["forewarm-worker"]; w != nil {
		for _, e := range w.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "FOREWARM_HOSTS" {
				driver = e.Value
			}
		}
	}
	switch ds := r.daemonSets["forewarm-hostagent"]; {
	case driver == "kubernetes" && (ds != nil || r.services["forewarm-hostagent"] != nil):
		t.Errorf("the host agent is deployed beside the Kubernetes driver: it would hold node memory no pod can use")
	case driver != "kubernetes" && ds == nil:
		t.Errorf("no host agent DaemonSet")
	}
	// A new schema needs a new Job (its pod template is immutable): the
	// name carries the version this build migrates to.
	if r.jobs[migrateJob] == nil {
		t.Errorf("no migration Job %s (store/chconn.SchemaVersion is %d; Jobs: %v): rename it in base/migrate-job.yaml",
			migrateJob, chconn.SchemaVersion, slices.Sorted(maps.Keys(r.jobs)))
	}
	for _, j := range r.jobs {
		if ttl := j.Spec.TTLSecondsAfterFinished; ttl == nil || *ttl < 300 || *ttl > 3600 {
			t.Errorf("Job %s: ttlSecondsAfterFinished %v: want 5 min to 1 h (time to wait for it, short enough that a later apply recreates it)", j.Name, ttl)
		}
	}
}

func checkWorkloads(t reporter, r *rendered, workerEnv, agentEnv map[string]bool) {
	clickhouseUser := map[string]string{} // workload -> Secret with its ClickHouse user
	for _, w := range r.workloads() {
		where := w.kind + " " + w.name
		if w.selector != nil && !selects(w.selector, w.pod.Labels) {
			t.Errorf("%s: selector %v does not select its own pods %v", where, w.selector, w.pod.Labels)
		}
		ps := w.pod.Spec
		if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: pods may run as root (set securityContext.runAsNonRoot)", where)
		} else if sc := ps.SecurityContext; sc.RunAsUser == nil || *sc.RunAsUser != 10001 || sc.FSGroup == nil || *sc.FSGroup != 10001 {
			t.Errorf("%s: the pod's runAsUser and fsGroup must be 10001 (the images' user; fsGroup gives it its volumes without a root init container)", where)
		}
		if len(ps.InitContainers) > 0 {
			t.Errorf("%s: init containers %v: none is needed (fsGroup owns the volumes)", where, ps.InitContainers)
		}
		mounted := map[string]bool{}
		for _, c := range slices.Concat(ps.InitContainers, ps.Containers) {
			if !strings.HasPrefix(c.Image, workerImage) && !strings.HasPrefix(c.Image, agentImage) {
				t.Errorf("%s container %s: image %q is not a registry-qualified, tagged Forewarm image (%s…, %s…)", where, c.Name, c.Image, workerImage, agentImage)
			}
			if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
				t.Errorf("%s container %s: set CPU and memory requests and a memory limit", where, c.Name)
			}
			if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s container %s: allowPrivilegeEscalation must be false", where, c.Name)
			} else if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("%s container %s: want readOnlyRootFilesystem and capabilities drop [ALL]", where, c.Name)
			}
			for _, m := range c.VolumeMounts {
				mounted[m.Name] = true
				if !slices.ContainsFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
					t.Errorf("%s container %s mounts volume %s, which the pod does not have", where, c.Name, m.Name)
				}
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
				if p != nil && p.HTTPGet != nil && !hasPort(&c, p.HTTPGet.Port.StrVal, p.HTTPGet.Port.IntVal) {
					t.Errorf("%s container %s: a probe uses port %s, which the container does not expose", where, c.Name, p.HTTPGet.Port.String())
				}
			}
		}
		for _, c := range ps.InitContainers {
			r.env(t, w, &c) // its references must resolve too
		}
		for _, v := range ps.Volumes {
			if !mounted[v.Name] {
				t.Errorf("%s: volume %s is mounted by no container", where, v.Name)
			}
			if v.Secret != nil && r.secrets[v.Secret.SecretName] == nil {
				t.Errorf("%s: volume %s uses Secret %s, which does not exist", where, v.Name, v.Secret.SecretName)
			}
			if v.ConfigMap != nil && r.configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("%s: volume %s uses ConfigMap %s, which does not exist", where, v.Name, v.ConfigMap.Name)
			}
		}
		if p := w.pod.Annotations["prometheus.io/port"]; p != "" {
			n, _ := strconv.Atoi(p)
			if !slices.ContainsFunc(ps.Containers, func(c corev1.Container) bool { return hasPort(&c, "", int32(n)) }) {
				t.Errorf("%s: prometheus.io/port %s is no container's port", where, p)
			}
		}
		for _, c := range ps.Containers {
			env := r.env(t, w, &c)
			var need map[string]bool
			switch {
			case strings.HasPrefix(c.Image, agentImage):
				need = agentEnv
			case w.kind == "Job":
				need = map[string]bool{}
				for k := range workerEnv {
					if strings.HasPrefix(k, "CLICKHOUSE_") {
						need[k] = true
					}
				}
			default:
				need = workerEnv
			}
			for _, k := range slices.Sorted(maps.Keys(need)) {
				if _, ok := env[k]; !ok && k != "TEMPORAL_API_KEY" { // only the API-key overlay has one
					t.Errorf("%s container %s reads $%s, which no ConfigMap, Secret or env entry gives it", where, c.Name, k)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(config.DeprecatedTemporalEnv)) {
				if _, ok := env[k]; ok {
					t.Errorf("%s container %s sets the deprecated $%s: use $%s", where, c.Name, k, config.DeprecatedTemporalEnv[k])
				}
			}
			for _, k := range []string{"CLICKHOUSE_PASSWORD", "HOSTAGENT_TOKEN", "TEMPORAL_API_KEY", "FOREWARM_AGENT_ROOT_SECRET"} {
				if e, ok := env[k]; ok && !strings.HasPrefix(e.source, "secret/") && !(e.source != "literal" && e.value == "") {
					t.Errorf("%s container %s: $%s comes from %s, not from a Secret", where, c.Name, k, e.source)
				}
			}
			clickhouseUser[w.name] = env["CLICKHOUSE_USER"].source
			switch w.name {
			case "forewarm-worker", "forewarm-trainer":
				checkStop(t, r, w, &c, env)
				checkWorkerMemory(t, w, &c, env)
				if pc := r.priorityClasses[ps.PriorityClassName]; pc == nil {
					t.Errorf("%s: priorityClassName %q is no rendered PriorityClass", where, ps.PriorityClassName)
				}
				// Per-host agent tokens: the root secret, never a shared token.
				if !strings.HasPrefix(env["FOREWARM_AGENT_ROOT_SECRET"].source, "secret/") || env["HOSTAGENT_TOKEN"].value != "" || env["HOSTAGENT_TOKEN_FILE"].value != "" {
					t.Errorf("%s: the workers must hold the agents' root secret (from a Secret) and no shared token", where)
				}
				if w.name == "forewarm-worker" {
					checkAgentBinding(t, w, &c, env)
				}
			case "forewarm-hostagent":
				checkAgent(t, r, w, &c, env)
			case migrateJob:
				checkGoMemLimit(t, w, &c, env)
				if !slices.Contains(c.Command, "migrate") {
					t.Errorf("%s: command %v does not run `starter migrate`", where, c.Command)
				}
			}
		}
	}
	if d := r.deployments["forewarm-worker"]; d != nil && (d.Spec.Replicas == nil || *d.Spec.Replicas < 2) {
		t.Errorf("forewarm-worker has fewer than 2 replicas")
	}
	// Three ClickHouse users: the workers', the migration's, the agents'.
	if a, b, c := clickhouseUser["forewarm-worker"], clickhouseUser[migrateJob], clickhouseUser["forewarm-hostagent"]; a == b || a == c || b == c || a == "" {
		t.Errorf("ClickHouse credentials: worker %s, migration %s, agents %s; want three different Secrets", a, b, c)
	}
	for _, p := range r.pdbs {
		if !slices.ContainsFunc(r.workloads(), func(w workload) bool {
			return w.kind == "Deployment" && selects(p.Spec.Selector.MatchLabels, w.pod.Labels)
		}) {
			t.Errorf("PodDisruptionBudget %s selects no Deployment's pods", p.Name)
		}
	}
}

// checkStop: SIGTERM lets activities finish (stop timeout longer than the
// longest prediction activity) before Kubernetes kills the pod.
func checkStop(t reporter, r *rendered, w workload, c *corev1.Container, env map[string]envVar) {
	stop, err := time.ParseDuration(env["FOREWARM_STOP_TIMEOUT"].value)
	if err != nil {
		t.Errorf("%s: FOREWARM_STOP_TIMEOUT %q: %v", w.name, env["FOREWARM_STOP_TIMEOUT"].value, err)
		return
	}
	grace := time.Duration(*w.pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if stop < longestPredictionActivity || grace <= stop {
		t.Errorf("%s: stop timeout %v, grace period %v: want longest activity (%v) <= stop timeout < grace period", w.name, stop, grace, longestPredictionActivity)
	}
	if !slices.ContainsFunc(c.Args, func(a string) bool { return a == "prediction" || a == "training" }) {
		t.Errorf("%s: args %v name no task queue", w.name, c.Args)
	}
}

// checkAgentBinding: a host's token goes only to an agent bound to its
// host ID (any node can register any ID): {host} in the URL pattern, or
// https with certificates naming the host, verified against a CA mounted
// from a Secret.
func checkAgentBinding(t reporter, w workload, c *corev1.Container, env map[string]envVar) {
	allow, name := env["FOREWARM_AGENT_URL_ALLOW"].value, env["FOREWARM_AGENT_TLS_NAME"].value
	switch {
	case strings.Contains(allow, "{host}"):
	case strings.Contains(name, "{host}") && strings.HasPrefix(allow, "https://"):
		if ca := env["FOREWARM_AGENT_CA"].value; !mountedSecretFile(w.pod, c, ca, "forewarm-agent-ca") {
			t.Errorf("%s: FOREWARM_AGENT_CA=%q is not a file of the mounted forewarm-agent-ca Secret", w.name, ca)
		}
		if env["FOREWARM_AGENT_INSECURE"].value == "true" {
			t.Errorf("%s: FOREWARM_AGENT_INSECURE=true with TLS-bound agents", w.name)
		}
	default:
		t.Errorf("%s: FOREWARM_AGENT_URL_ALLOW %q and FOREWARM_AGENT_TLS_NAME %q bind no agent URL to its host ID: the worker would refuse every agent off loopback", w.name, allow, name)
	}
}

// checkAgent: Guaranteed QoS (requests = limits), capacity from the
// container's memory limit less the agent's own overhead, lease files in
// a sized emptyDir that the ephemeral-storage limit covers, its own
// credentials from a Secret by its node's name, nothing from the node's
// file system, a token-free metrics port, and priority over the workers.
func checkAgent(t reporter, r *rendered, w workload, c *corev1.Container, env map[string]envVar) {
	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		rq, ok1 := req[res]
		l, ok2 := lim[res]
		if !ok1 || !ok2 || rq.Cmp(l) != 0 {
			t.Errorf("%s: %s request %s and limit %s must both be set and equal (Guaranteed QoS)", w.name, res, rq.String(), l.String())
		}
	}
	if v := env["HOSTAGENT_MEMORY_MB"]; v.value != "cgroup" {
		t.Errorf("%s: HOSTAGENT_MEMORY_MB %q from %s: want cgroup (the memory limit less HOSTAGENT_MEMORY_OVERHEAD_MB)", w.name, v.value, v.source)
	}
	limitMB := lim.Memory().Value() >> 20
	if o, err := strconv.ParseInt(env["HOSTAGENT_MEMORY_OVERHEAD_MB"].value, 10, 64); err != nil || o < 128 || o*4 > limitMB {
		t.Errorf("%s: HOSTAGENT_MEMORY_OVERHEAD_MB %q: want 128 MB up to a quarter of the %d MB limit", w.name, env["HOSTAGENT_MEMORY_OVERHEAD_MB"].value, limitMB)
	}
	var cpuFrom *corev1.ResourceFieldSelector
	for _, e := range c.Env {
		if e.Name == "HOSTAGENT_CPU_MILLI" && e.ValueFrom != nil {
			cpuFrom = e.ValueFrom.ResourceFieldRef
		}
	}
	if cpuFrom == nil || cpuFrom.Resource != "requests.cpu" || cpuFrom.Divisor.String() != "1m" {
		t.Errorf("%s: HOSTAGENT_CPU_MILLI must come from the container's requests.cpu in m, is %+v", w.name, cpuFrom)
	}
	// Lease files: a folder inside an emptyDir whose sizeLimit covers
	// HOSTAGENT_DISK_MB; every emptyDir sized, all within the limit.
	var emptyDirs resource.Quantity
	for _, v := range w.pod.Spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: volume %s is a hostPath (Pod Security baseline refuses it)", w.name, v.Name)
		}
		if v.EmptyDir != nil {
			if v.EmptyDir.SizeLimit == nil {
				t.Errorf("%s: emptyDir %s has no sizeLimit", w.name, v.Name)
			} else {
				emptyDirs.Add(*v.EmptyDir.SizeLimit)
			}
		}
	}
	if es := lim[corev1.ResourceEphemeralStorage]; es.Cmp(emptyDirs) < 0 {
		t.Errorf("%s: ephemeral-storage limit %s is below its emptyDirs' %s", w.name, es.String(), emptyDirs.String())
	}
	dir := env["HOSTAGENT_DATA_DIR"].value
	diskMB, err := strconv.ParseInt(env["HOSTAGENT_DISK_MB"].value, 10, 64)
	if err != nil || diskMB <= 0 {
		t.Errorf("%s: HOSTAGENT_DISK_MB %q is not a size", w.name, env["HOSTAGENT_DISK_MB"].value)
	}
	var data *corev1.Volume
	for _, m := range c.VolumeMounts {
		for i, v := range w.pod.Spec.Volumes {
			if v.Name == m.Name && v.EmptyDir != nil && strings.HasPrefix(dir, m.MountPath+"/") {
				data = &w.pod.Spec.Volumes[i]
			}
		}
	}
	switch {
	case data == nil:
		t.Errorf("%s: HOSTAGENT_DATA_DIR %q is not a folder inside a mounted emptyDir (the agent refuses the emptyDir itself: it is group-writable)", w.name, dir)
	case data.EmptyDir.SizeLimit != nil && data.EmptyDir.SizeLimit.Cmp(*resource.NewQuantity(diskMB<<20, resource.BinarySI)) < 0:
		t.Errorf("%s: emptyDir %s sizeLimit %s does not hold HOSTAGENT_DISK_MB=%d of lease files", w.name, data.Name, data.EmptyDir.SizeLimit.String(), diskMB)
	}
	// Its own token and certificate, from a Secret, by its node's name
	// (HOSTAGENT_HOST_ID must come first: $(…) expands earlier entries only).
	at := func(name string) int {
		return slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	}
	if i := at("HOSTAGENT_HOST_ID"); i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("%s: HOSTAGENT_HOST_ID should be the node's name", w.name)
	}
	for _, k := range []string{"HOSTAGENT_TOKEN_FILE", "HOSTAGENT_TLS_CERT", "HOSTAGENT_TLS_KEY"} {
		f := env[k].value
		if !strings.Contains(filepath.Base(f), "$(HOSTAGENT_HOST_ID)") || at(k) < at("HOSTAGENT_HOST_ID") || !mountedSecretFile(w.pod, c, f, "forewarm-agent-credentials") {
			t.Errorf("%s: %s %q must be a file named by $(HOSTAGENT_HOST_ID), set after it, in the mounted forewarm-agent-credentials Secret", w.name, k, f)
		}
	}
	if env["HOSTAGENT_TOKEN"].value != "" {
		t.Errorf("%s: HOSTAGENT_TOKEN must be empty: each host has its own token file", w.name)
	}
	if s := r.secrets["forewarm-agent-credentials"]; s != nil {
		keys := secretKeys(s)
		for k := range keys {
			if node, ok := strings.CutSuffix(k, ".token"); ok && (!keys[node+".crt"] || !keys[node+".key"]) {
				t.Errorf("Secret forewarm-agent-credentials: %s lacks its %s.crt or %s.key", k, node, node)
			}
		}
	}
	if !strings.Contains(env["HOSTAGENT_ADVERTISE_URL"].value, "$(POD_IP)") || env["POD_IP"].source != "field" {
		t.Errorf("%s: the agent must advertise its pod IP (HOSTAGENT_ADVERTISE_URL %q)", w.name, env["HOSTAGENT_ADVERTISE_URL"].value)
	}
	if !strings.HasPrefix(env["HOSTAGENT_ADVERTISE_URL"].value, "https://") {
		t.Errorf("%s: the agent must advertise https:// (its certificate proves its host ID), not %q", w.name, env["HOSTAGENT_ADVERTISE_URL"].value)
	}
	if !strings.HasPrefix(env["HOSTAGENT_LISTEN"].value, "0.0.0.0:") {
		t.Errorf("%s: HOSTAGENT_LISTEN %q is not reachable from other pods", w.name, env["HOSTAGENT_LISTEN"].value)
	}
	// The token-free metrics listener is the container's port "metrics".
	host, port, _ := strings.Cut(env["HOSTAGENT_METRICS_LISTEN"].value, ":")
	n, _ := strconv.Atoi(port)
	if host != "0.0.0.0" || !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" && p.ContainerPort == int32(n) }) {
		t.Errorf("%s: HOSTAGENT_METRICS_LISTEN %q is not the container's port named metrics, reachable from other pods", w.name, env["HOSTAGENT_METRICS_LISTEN"].value)
	}
	// Above the workers, and on resource hosts that only it may use.
	pc := r.priorityClasses[w.pod.Spec.PriorityClassName]
	if pc == nil {
		t.Errorf("%s: priorityClassName %q is no rendered PriorityClass", w.name, w.pod.Spec.PriorityClassName)
	} else {
		for _, other := range r.priorityClasses {
			if other != pc && other.Value >= pc.Value {
				t.Errorf("%s: PriorityClass %s (%d) does not outrank %s (%d)", w.name, pc.Name, pc.Value, other.Name, other.Value)
			}
		}
	}
	if !slices.ContainsFunc(w.pod.Spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Key == "forewarm.io/host" && tl.Effect == corev1.TaintEffectNoSchedule && tl.Operator == corev1.TolerationOpExists
	}) {
		t.Errorf("%s: does not tolerate the forewarm.io/host NoSchedule taint of dedicated resource hosts", w.name)
	}
}

// checkGoMemLimit: GOMEMLIMIT 80-95% of the container's memory limit, so
// the Go collector works harder before the kernel OOM-kills it.
func checkGoMemLimit(t reporter, w workload, c *corev1.Container, env map[string]envVar) {
	limit := c.Resources.Limits.Memory().Value()
	got, err := parseGoMemLimit(env["GOMEMLIMIT"].value)
	if err != nil || got < limit*80/100 || got > limit*95/100 {
		t.Errorf("%s container %s: GOMEMLIMIT %q (%v): want 80%% to 95%% of the %s memory limit", w.name, c.Name, env["GOMEMLIMIT"].value, err, c.Resources.Limits.Memory())
	}
}

// checkWorkerMemory: GOMEMLIMIT, and a workflow cache that fits the limit.
func checkWorkerMemory(t reporter, w workload, c *corev1.Container, env map[string]envVar) {
	checkGoMemLimit(t, w, c, env)
	bound := loopsPerGiB * c.Resources.Limits.Memory().Value() >> 30
	if n, err := strconv.ParseInt(env["FOREWARM_WORKFLOW_CACHE"].value, 10, 64); err != nil || n <= 0 || n > bound {
		t.Errorf("%s: FOREWARM_WORKFLOW_CACHE %q: want 1..%d (%d per GiB of the %s limit; 0 is the SDK's 10,000)", w.name, env["FOREWARM_WORKFLOW_CACHE"].value, bound, loopsPerGiB, c.Resources.Limits.Memory())
	}
}

// parseGoMemLimit reads GOMEMLIMIT as the Go runtime does: bytes with an
// optional B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}, {"B", 0}}
	shift := uint(0)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a byte count")
	}
	return n << shift, nil
}

func checkServices(t reporter, r *rendered) {
	for _, s := range r.services {
		var picked []workload
		for _, w := range r.workloads() {
			if selects(s.Spec.Selector, w.pod.Labels) {
				picked = append(picked, w)
			}
		}
		if len(picked) == 0 {
			t.Errorf("Service %s selects no pods (%v)", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			for _, w := range picked {
				if !slices.ContainsFunc(w.pod.Spec.Containers, func(c corev1.Container) bool {
					return hasPort(&c, p.TargetPort.StrVal, p.TargetPort.IntVal)
				}) {
					t.Errorf("Service %s port %s: target %s is no port of %s %s", s.Name, p.Name, p.TargetPort.String(), w.kind, w.name)
				}
			}
		}
	}
	for _, m := range r.serviceMonitors {
		var svc *corev1.Service
		for _, s := range r.services {
			if selects(m.Spec.Selector.MatchLabels, s.Labels) {
				svc = s
			}
		}
		if svc == nil {
			t.Errorf("ServiceMonitor %s selects no Service (%v)", m.Name, m.Spec.Selector.MatchLabels)
			continue
		}
		for _, e := range m.Spec.Endpoints {
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
				t.Errorf("ServiceMonitor %s: port %q is not a port of Service %s", m.Name, e.Port, svc.Name)
			}
			if b := e.BearerTokenSecret; b != nil && (r.secrets[b.Name] == nil || !secretKeys(r.secrets[b.Name])[b.Key]) {
				t.Errorf("ServiceMonitor %s: bearer token Secret %s key %s does not exist", m.Name, b.Name, b.Key)
			}
		}
	}
}

// withServiceMonitors renders overlay with components/servicemonitor
// added, as deploy/README.md tells an operator to.
func withServiceMonitors(t *testing.T, overlay string) *rendered {
	t.Helper()
	return renderDir(t, overlay+"+servicemonitor", withComponent(t, overlay, "servicemonitor"))
}

// withComponent writes a kustomization of the overlay with the component
// added (as a user adds one) and returns its folder.
func withComponent(t *testing.T, overlay, component string) string {
	t.Helper()
	dir := t.TempDir()
	// kustomize takes only relative paths to other kustomizations.
	rel := func(p string) string {
		a, err := filepath.Abs(p)
		if err == nil {
			a, err = filepath.Rel(dir, a)
		}
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n",
		rel(filepath.Join("overlays", overlay)), rel(filepath.Join("components", component)))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The ServiceMonitor component, added to any overlay, scrapes the workers
// and the agents' token-free metrics port.
func TestServiceMonitorComponent(t *testing.T) {
	overlays := overlayDirs(t)
	for _, o := range overlays {
		t.Run(o.Name(), func(t *testing.T) {
			r := withServiceMonitors(t, o.Name())
			checkObjects(t, r)
			checkServices(t, r)
			for _, n := range []string{"forewarm-worker", "forewarm-hostagent"} {
				m := r.serviceMonitors[n]
				if m == nil {
					t.Errorf("no ServiceMonitor %s", n)
					continue
				}
				for _, e := range m.Spec.Endpoints {
					if e.Port != "metrics" || e.Path != "/metrics" || e.BearerTokenSecret != nil {
						t.Errorf("ServiceMonitor %s: endpoint %+v: want port metrics, path /metrics, no bearer token", n, e)
					}
				}
			}
			// The alerting rules are the rule file's, word for word.
			pr := r.prometheusRules["forewarm"]
			if pr == nil {
				t.Fatal("no PrometheusRule forewarm")
			}
			b, err := os.ReadFile(alertsFile)
			if err != nil {
				t.Fatal(err)
			}
			var file struct {
				Groups []any `json:"groups"`
			}
			if err := yaml.UnmarshalStrict(b, &file); err != nil {
				t.Fatalf("%s: %v", alertsFile, err)
			}
			if len(file.Groups) == 0 || !reflect.DeepEqual(file.Groups, pr.Spec.Groups) {
				t.Errorf("PrometheusRule forewarm (components/servicemonitor/prometheusrule.yaml) differs from %s: edit both", alertsFile)
			}
		})
	}
}

// alertsFile is the rule file the PrometheusRule carries.
var alertsFile = filepath.Join("..", "prometheus", "alerts.yaml")

// collector records what the checks report.
type collector struct{ msgs []string }

func (c *collector) Errorf(format string, args ...any) {
	c.msgs = append(c.msgs, fmt.Sprintf(format, args...))
}

// The checks are not vacuous: broken references in a rendered overlay are
// reported, each by name.
func TestChecksCatchBrokenReferences(t *testing.T) {
	r := withServiceMonitors(t, "self-hosted")
	w := r.deployments["forewarm-worker"].Spec.Template.Spec.Containers
	w[0].EnvFrom[0].ConfigMapRef.Name = "no-such-config"
	w[0].LivenessProbe.HTTPGet.Port.StrVal = "nope"
	w[0].Env = append(w[0].Env, corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "forewarm-clickhouse"}, Key: "WRONG_KEY"}}})
	for i, e := range w[0].Env {
		if e.Name == "GOMEMLIMIT" {
			w[0].Env[i].Value = "1GiB" // the whole limit
		}
	}
	for n, cm := range r.configMaps {
		if strings.HasPrefix(n, "forewarm-worker-") {
			cm.Data["FOREWARM_WORKFLOW_CACHE"] = "10000"
		}
	}
	agentPod := &r.daemonSets["forewarm-hostagent"].Spec.Template.Spec
	agentPod.Containers[0].VolumeMounts[2].MountPath = "/elsewhere"
	agentPod.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("9Gi")
	for i := range agentPod.Volumes {
		if agentPod.Volumes[i].Name == "data" {
			q := resource.MustParse("30Gi")
			agentPod.Volumes[i].EmptyDir.SizeLimit = &q
		}
	}
	agentPod.Volumes = append(agentPod.Volumes, corev1.Volume{Name: "node", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib"}}})
	agentPod.Containers[0].VolumeMounts = append(agentPod.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "node", MountPath: "/node"})
	r.jobs["forewarm-migrate-v1"] = r.jobs[migrateJob]
	delete(r.jobs, migrateJob)
	r.services["forewarm-worker-metrics"].Spec.Ports[0].TargetPort.StrVal = "other"
	r.serviceMonitors["forewarm-worker"].Spec.Endpoints[0].Port = "web"
	var c collector
	checkObjects(&c, r)
	checkWorkloads(&c, r, map[string]bool{"CLICKHOUSE_ADDR": true}, map[string]bool{"HOSTAGENT_LISTEN": true})
	checkServices(&c, r)
	for _, want := range []string{
		"envFrom ConfigMap no-such-config does not exist",
		"a probe uses port nope, which the container does not expose",
		"X from Secret forewarm-clickhouse key WRONG_KEY, which does not exist",
		`GOMEMLIMIT "1GiB" (<nil>): want 80% to 95% of the 1Gi memory limit`,
		`FOREWARM_WORKFLOW_CACHE "10000": want 1..4000`,
		`HOSTAGENT_TOKEN_FILE "/etc/forewarm-agent/credentials/$(HOSTAGENT_HOST_ID).token" must be a file named by $(HOSTAGENT_HOST_ID), set after it, in the mounted forewarm-agent-credentials Secret`,
		"forewarm-hostagent: memory request 8704Mi and limit 9Gi must both be set and equal",
		"forewarm-hostagent: volume node is a hostPath",
		"forewarm-hostagent: ephemeral-storage limit 22Gi is below",
		fmt.Sprintf("no migration Job forewarm-migrate-v%d", chconn.SchemaVersion),
		"Service forewarm-worker-metrics port metrics: target other is no port of Deployment forewarm-trainer",
		`ServiceMonitor forewarm-worker: port "web" is not a port of Service forewarm-worker-metrics`,
	} {
		if !slices.ContainsFunc(c.msgs, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("not reported: %q\nreported: %s", want, strings.Join(c.msgs, "\n"))
		}
	}
}

// podSecurity runs a pod template through the Pod Security admission
// checks at level (the latest version's rules) and returns what fails.
func podSecurity(t *testing.T, level psapi.Level, pod *corev1.PodTemplateSpec) []string {
	t.Helper()
	ev, err := pspolicy.NewEvaluator(pspolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, res := range ev.EvaluatePod(psapi.LevelVersion{Level: level, Version: psapi.LatestVersion()}, &pod.ObjectMeta, &pod.Spec) {
		if !res.Allowed {
			failed = append(failed, res.ForbiddenReason+": "+res.ForbiddenDetail)
		}
	}
	return failed
}

// Every workload passes Pod Security "restricted" (so "baseline" too),
// the host agent included: no hostPath, no root, no capabilities.
func TestPodSecurity(t *testing.T) {
	overlays := overlayDirs(t)
	for _, o := range overlays {
		r := render(t, o.Name())
		ws := r.workloads()
		if len(ws) != 4 {
			t.Errorf("%s: %d workloads, want the worker, trainer, agent and migration", o.Name(), len(ws))
		}
		for _, w := range ws {
			for _, level := range []psapi.Level{psapi.LevelBaseline, psapi.LevelRestricted} {
				if failed := podSecurity(t, level, w.pod); len(failed) > 0 {
					t.Errorf("%s: %s %s fails Pod Security %q: %s", o.Name(), w.kind, w.name, level, strings.Join(failed, "; "))
				}
			}
		}
	}
}

// The check is not vacuous: the agent with its data on the node (a
// hostPath) fails baseline, a worker running as root fails restricted.
func TestPodSecurityCatchesViolations(t *testing.T) {
	r := render(t, "self-hosted")
	agentPod := r.daemonSets["forewarm-hostagent"].Spec.Template.DeepCopy()
	agentPod.Spec.Volumes = append(agentPod.Spec.Volumes, corev1.Volume{Name: "node-data",
		VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/forewarm/agent"}}})
	if failed := podSecurity(t, psapi.LevelBaseline, agentPod); !slices.ContainsFunc(failed, func(f string) bool {
		return strings.Contains(f, "hostPath volumes") && strings.Contains(f, "node-data")
	}) {
		t.Errorf("an agent with a hostPath volume passes baseline: %v", failed)
	}
	worker := r.deployments["forewarm-worker"].Spec.Template.DeepCopy()
	root := int64(0)
	worker.Spec.SecurityContext.RunAsUser = &root
	worker.Spec.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
	failed := podSecurity(t, psapi.LevelRestricted, worker)
	for _, want := range []string{"runAsUser=0", "unrestricted capabilities"} {
		if !slices.ContainsFunc(failed, func(f string) bool { return strings.Contains(f, want) }) {
			t.Errorf("a root worker adding NET_ADMIN: restricted does not report %q: %v", want, failed)
		}
	}
	if failed := podSecurity(t, psapi.LevelBaseline, worker); !slices.ContainsFunc(failed, func(f string) bool { return strings.Contains(f, "capabilities") }) {
		t.Errorf("a worker adding NET_ADMIN passes baseline: %v", failed)
	}
}

// The Kubernetes driver's component, added to any overlay: the worker runs
// as its own service account with the roles bound to it, the driver's
// settings and a readable applications file, still Pod Security
// restricted.
func TestKubeDriverComponent(t *testing.T) {
	overlays := overlayDirs(t)
	for _, o := range overlays {
		t.Run(o.Name(), func(t *testing.T) {
			r := renderDir(t, o.Name()+"+kube-driver", withComponent(t, o.Name(), "kube-driver"))
			checkObjects(t, r)
			w := r.deployments["forewarm-worker"]
			if w == nil {
				t.Fatal("no worker")
			}
			pod := w.Spec.Template.Spec
			if pod.ServiceAccountName != "forewarm-worker" || pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
				t.Errorf("worker: service account %q, automount %v: want forewarm-worker with its token", pod.ServiceAccountName, pod.AutomountServiceAccountToken)
			}
			sa, _ := r.rbac["ServiceAccount/forewarm-worker"].(*corev1.ServiceAccount)
			if sa == nil || sa.Namespace != w.Namespace {
				t.Errorf("no ServiceAccount forewarm-worker in the worker's namespace %s", w.Namespace)
			}
			for _, b := range []string{"ClusterRoleBinding/forewarm-driver-nodes", "RoleBinding/forewarm-driver"} {
				var subjects []rbacv1.Subject
				switch x := r.rbac[b].(type) {
				case *rbacv1.ClusterRoleBinding:
					subjects = x.Subjects
				case *rbacv1.RoleBinding:
					subjects = x.Subjects
				}
				if len(subjects) != 1 || subjects[0].Name != "forewarm-worker" || subjects[0].Namespace != w.Namespace {
					t.Errorf("%s binds %+v, want the worker's service account in %s", b, subjects, w.Namespace)
				}
			}
			env := map[string]string{}
			for _, e := range pod.Containers[0].Env {
				env[e.Name] = e.Value
			}
			if env["FOREWARM_HOSTS"] != "kubernetes" || env["FOREWARM_KUBE_APPS"] == "" {
				t.Errorf("worker env %v: want FOREWARM_HOSTS=kubernetes and FOREWARM_KUBE_APPS", env)
			}
			var apps *corev1.ConfigMap
			for n, cm := range r.configMaps {
				if strings.HasPrefix(n, "forewarm-kube-apps") {
					apps = cm
				}
			}
			if apps == nil {
				t.Fatal("no forewarm-kube-apps ConfigMap")
			}
			f := filepath.Join(t.TempDir(), "apps.json")
			if err := os.WriteFile(f, []byte(apps.Data["apps.json"]), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := kube.LoadApps(f); err != nil {
				t.Errorf("the shipped applications file: %v", err)
			}
			for _, level := range []psapi.Level{psapi.LevelBaseline, psapi.LevelRestricted} {
				if failed := podSecurity(t, level, &w.Spec.Template); len(failed) > 0 {
					t.Errorf("worker with the driver fails Pod Security %q: %s", level, strings.Join(failed, "; "))
				}
			}
		})
	}
}
