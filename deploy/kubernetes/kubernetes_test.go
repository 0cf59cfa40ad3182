// Package kubernetes_test renders every overlay of deploy/kubernetes with
// kustomize (its Go library, what `kubectl kustomize` runs), decodes every object strictly into the Kubernetes
// API types (an unknown field is an error) and checks what a cluster would
// only report at run time: references to ConfigMaps, Secrets and their
// keys, labels and selectors, named ports, the settings every program
// reads, and the shutdown and capacity rules the deployment relies on.
package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/forewarm/forewarm/internal/config"
)

const namespace = "forewarm"

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
	serviceMonitors map[string]*serviceMonitor
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

func render(t *testing.T, overlay string) *rendered {
	t.Helper()
	// Rendered with kustomize's own library (what `kubectl kustomize` runs),
	// so the test needs no kubectl on the machine.
	dir := filepath.Join("overlays", overlay)
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendered{overlay: overlay, namespaces: map[string]*corev1.Namespace{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, services: map[string]*corev1.Service{}, deployments: map[string]*appsv1.Deployment{},
		daemonSets: map[string]*appsv1.DaemonSet{}, jobs: map[string]*batchv1.Job{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		serviceMonitors: map[string]*serviceMonitor{}}
	want := map[string]string{"Namespace": "v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1", "Deployment": "apps/v1",
		"DaemonSet": "apps/v1", "Job": "batch/v1", "PodDisruptionBudget": "policy/v1", "ServiceMonitor": "monitoring.coreos.com/v1"}
	for i, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: object %d is not YAML: %v", overlay, i, err)
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(j, &tm); err != nil {
			t.Fatal(err)
		}
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
		case "ServiceMonitor":
			o := &serviceMonitor{}
			obj, r.serviceMonitors = o, with(r.serviceMonitors, o)
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
	rekey(r.serviceMonitors)
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
	overlays, err := os.ReadDir("overlays")
	if err != nil || len(overlays) < 3 {
		t.Fatalf("overlays: %v (%d)", err, len(overlays))
	}
	for _, o := range overlays {
		t.Run(o.Name(), func(t *testing.T) {
			r := render(t, o.Name())
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
	for _, n := range []string{"forewarm-worker", "forewarm-trainer"} {
		if r.deployments[n] == nil {
			t.Errorf("no Deployment %s", n)
		}
	}
	if r.daemonSets["forewarm-hostagent"] == nil || r.jobs["forewarm-migrate"] == nil {
		t.Errorf("no host agent DaemonSet or migration Job")
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
		}
		mounted := map[string]bool{}
		for _, c := range slices.Concat(ps.InitContainers, ps.Containers) {
			if !strings.HasPrefix(c.Image, "forewarm/worker:") && !strings.HasPrefix(c.Image, "forewarm/hostagent:") {
				t.Errorf("%s container %s: image %q is not a tagged Forewarm image", where, c.Name, c.Image)
			}
			if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
				t.Errorf("%s container %s: set CPU and memory requests and a memory limit", where, c.Name)
			}
			if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s container %s: allowPrivilegeEscalation must be false", where, c.Name)
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
			case strings.HasPrefix(c.Image, "forewarm/hostagent:"):
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
				// Per-host agent tokens: the root secret, never a shared token.
				if !strings.HasPrefix(env["FOREWARM_AGENT_ROOT_SECRET"].source, "secret/") || env["HOSTAGENT_TOKEN"].value != "" || env["HOSTAGENT_TOKEN_FILE"].value != "" {
					t.Errorf("%s: the workers must hold the agents' root secret (from a Secret) and no shared token", where)
				}
				if w.name == "forewarm-worker" {
					checkAgentBinding(t, w, &c, env)
				}
			case "forewarm-hostagent":
				checkAgent(t, w, &c, env)
			case "forewarm-migrate":
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
	if a, b, c := clickhouseUser["forewarm-worker"], clickhouseUser["forewarm-migrate"], clickhouseUser["forewarm-hostagent"]; a == b || a == c || b == c || a == "" {
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

// checkAgent: capacity from the pod's memory request (with room for the
// agent under the limit), data folder on the node, token from a Secret.
func checkAgent(t reporter, w workload, c *corev1.Container, env map[string]envVar) {
	var memFrom *corev1.ResourceFieldSelector
	for _, e := range c.Env {
		if e.Name == "HOSTAGENT_MEMORY_MB" && e.ValueFrom != nil {
			memFrom = e.ValueFrom.ResourceFieldRef
		}
	}
	if memFrom == nil || memFrom.Resource != "requests.memory" || memFrom.Divisor.String() != "1Mi" {
		t.Errorf("%s: HOSTAGENT_MEMORY_MB must come from the container's requests.memory in Mi, is %+v", w.name, memFrom)
	}
	if c.Resources.Limits.Memory().Cmp(*c.Resources.Requests.Memory()) <= 0 {
		t.Errorf("%s: the memory limit must leave room above the request the agent hands out", w.name)
	}
	hostMount := func(path string, typ corev1.HostPathType) bool {
		for _, m := range c.VolumeMounts {
			for _, v := range w.pod.Spec.Volumes {
				if v.Name == m.Name && m.MountPath == path && v.HostPath != nil && v.HostPath.Type != nil && *v.HostPath.Type == typ {
					return true
				}
			}
		}
		return false
	}
	if dir := env["HOSTAGENT_DATA_DIR"].value; !hostMount(dir, corev1.HostPathDirectoryOrCreate) {
		t.Errorf("%s: HOSTAGENT_DATA_DIR %q is not a folder on the node (hostPath DirectoryOrCreate)", w.name, dir)
	}
	// Its own token, from a file on its node; no shared one.
	if f := env["HOSTAGENT_TOKEN_FILE"].value; !hostMount(f, corev1.HostPathFile) || env["HOSTAGENT_TOKEN"].value != "" {
		t.Errorf("%s: HOSTAGENT_TOKEN_FILE %q must be a file on the node (hostPath File), HOSTAGENT_TOKEN empty", w.name, f)
	}
	if !strings.Contains(env["HOSTAGENT_ADVERTISE_URL"].value, "$(POD_IP)") || env["POD_IP"].source != "field" {
		t.Errorf("%s: the agent must advertise its pod IP (HOSTAGENT_ADVERTISE_URL %q)", w.name, env["HOSTAGENT_ADVERTISE_URL"].value)
	}
	// Its certificate (naming its node, which binds its token to it) and
	// key, from files on the node; advertised over https.
	for _, k := range []string{"HOSTAGENT_TLS_CERT", "HOSTAGENT_TLS_KEY"} {
		if f := env[k].value; !hostMount(f, corev1.HostPathFile) {
			t.Errorf("%s: %s %q must be a file on the node (hostPath File)", w.name, k, f)
		}
	}
	if !strings.HasPrefix(env["HOSTAGENT_ADVERTISE_URL"].value, "https://") {
		t.Errorf("%s: the agent must advertise https:// (its certificate proves its host ID), not %q", w.name, env["HOSTAGENT_ADVERTISE_URL"].value)
	}
	if env["HOSTAGENT_HOST_ID"].source != "field" {
		t.Errorf("%s: HOSTAGENT_HOST_ID should be the node's name", w.name)
	}
	if !strings.HasPrefix(env["HOSTAGENT_LISTEN"].value, "0.0.0.0:") {
		t.Errorf("%s: HOSTAGENT_LISTEN %q is not reachable from other pods", w.name, env["HOSTAGENT_LISTEN"].value)
	}
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
	if r.serviceMonitors["forewarm-worker"] == nil {
		t.Errorf("no ServiceMonitor for the workers")
	}
}

// collector records what the checks report.
type collector struct{ msgs []string }

func (c *collector) Errorf(format string, args ...any) {
	c.msgs = append(c.msgs, fmt.Sprintf(format, args...))
}

// The checks are not vacuous: broken references in a rendered overlay are
// reported, each by name.
func TestChecksCatchBrokenReferences(t *testing.T) {
	r := render(t, "self-hosted")
	w := r.deployments["forewarm-worker"].Spec.Template.Spec.Containers
	w[0].EnvFrom[0].ConfigMapRef.Name = "no-such-config"
	w[0].LivenessProbe.HTTPGet.Port.StrVal = "nope"
	w[0].Env = append(w[0].Env, corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "forewarm-clickhouse"}, Key: "WRONG_KEY"}}})
	r.daemonSets["forewarm-hostagent"].Spec.Template.Spec.Containers[0].VolumeMounts[2].MountPath = "/elsewhere"
	r.services["forewarm-worker-metrics"].Spec.Ports[0].TargetPort.StrVal = "other"
	r.serviceMonitors["forewarm-worker"].Spec.Endpoints[0].Port = "web"
	var c collector
	checkWorkloads(&c, r, map[string]bool{"CLICKHOUSE_ADDR": true}, map[string]bool{"HOSTAGENT_LISTEN": true})
	checkServices(&c, r)
	for _, want := range []string{
		"envFrom ConfigMap no-such-config does not exist",
		"a probe uses port nope, which the container does not expose",
		"X from Secret forewarm-clickhouse key WRONG_KEY, which does not exist",
		`HOSTAGENT_TOKEN_FILE "/etc/forewarm-agent/token" must be a file on the node`,
		"Service forewarm-worker-metrics port metrics: target other is no port of Deployment forewarm-trainer",
		`ServiceMonitor forewarm-worker: port "web" is not a port of Service forewarm-worker-metrics`,
	} {
		if !slices.ContainsFunc(c.msgs, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("not reported: %q\nreported: %s", want, strings.Join(c.msgs, "\n"))
		}
	}
}
