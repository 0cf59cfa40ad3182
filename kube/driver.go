package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
)

// Labels and annotations the driver puts on what it creates.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	ManagedBy       = "forewarm"
	LabelLease      = "forewarm.io/lease"    // a digest of the lease ID (a label value is short)
	AnnotationLease = "forewarm.io/lease-id" // the lease ID itself
	LabelApp        = "forewarm.io/app"      // the app's name, or its digest when no label value can hold it
	AnnotationApp   = "forewarm.io/app"      // the app's name
	AnnotationUntil = "forewarm.io/expires"  // RFC 3339: the janitor deletes the pod after it
	// URLScheme prefixes a node's URL in the host list (kube://node/NAME).
	URLScheme = "kube://node/"
)

// Driver reserves warm instances on a cluster for the loops.
type Driver struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface // for Knative Services; nil: none configured
	Apps    map[string]App
	// Nodes selects the nodes that may hold warm pods (nil: every node).
	Nodes labels.Selector
	// HTTP sends the shadow requests (default: a client with no redirects).
	HTTP *http.Client
	Log  *slog.Logger
	Now  func() time.Time
}

func (d *Driver) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Driver) logger() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.Default()
}

// noRedirects sends the shadow requests when no client is given: a
// redirect is the application's answer, not a place to follow.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (d *Driver) http() *http.Client {
	if d.HTTP != nil {
		return d.HTTP
	}
	return noRedirects
}

// podNamespaces are the namespaces of the applications served by pods
// (not Knative), sorted: where warm pods may be.
func (d *Driver) podNamespaces() []string {
	var out []string
	for _, a := range d.Apps {
		if a.KnativeService == "" && !slices.Contains(out, a.Namespace) {
			out = append(out, a.Namespace)
		}
	}
	slices.Sort(out)
	return out
}

// LiveHosts lists the Ready, schedulable nodes the selector names, with
// their allocatable memory and CPU and what the pods on them already
// request (activities.HostDirectory): free memory is allocatable minus
// requests, as the scheduler counts it.
func (d *Driver) LiveHosts(ctx context.Context) ([]activities.HostInfo, error) {
	sel := labels.Everything()
	if d.Nodes != nil {
		sel = d.Nodes
	}
	nodes, err := d.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	pods, err := d.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.phase!=Succeeded,status.phase!=Failed"})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	type used struct{ memMB, cpuMilli float64 }
	byNode := map[string]used{}
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" {
			continue
		}
		u := byNode[p.Spec.NodeName]
		for _, c := range p.Spec.Containers {
			u.memMB += float64(c.Resources.Requests.Memory().Value()) / (1 << 20)
			u.cpuMilli += float64(c.Resources.Requests.Cpu().MilliValue())
		}
		byNode[p.Spec.NodeName] = u
	}
	var out []activities.HostInfo
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable || !nodeReady(n) {
			continue
		}
		memMB := float64(n.Status.Allocatable.Memory().Value()) / (1 << 20)
		cpu := n.Status.Allocatable.Cpu().MilliValue()
		disk := float64(n.Status.Allocatable.StorageEphemeral().Value()) / (1 << 20)
		u := byNode[n.Name]
		h := activities.HostInfo{ID: n.Name, URL: URLScheme + n.Name, MemoryMB: memMB, DiskMB: disk, CPUMilli: cpu,
			Speed: 1, FreeMemMB: max(0, memMB-u.memMB)}
		if cpu > 0 {
			h.CPUUtil = min(1, u.cpuMilli/float64(cpu))
		}
		if memMB > 0 {
			h.MemPressure = min(1, u.memMB/memMB)
		}
		if nodeCondition(n, corev1.NodeMemoryPressure) {
			h.MemPressure = 1
		}
		out = append(out, h)
	}
	return out, nil
}

func nodeReady(n corev1.Node) bool { return nodeCondition(n, corev1.NodeReady) }

func nodeCondition(n corev1.Node, t corev1.NodeConditionType) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// For is the client that places leases on node host (activities.HostClients).
func (d *Driver) For(host, url string) activities.HostClient {
	if url != URLScheme+host {
		return nodeClient{d: d, refused: permanent(fmt.Errorf("host %s: %q is not a node of this cluster (want %s%s)", host, url, URLScheme, host))}
	}
	return nodeClient{d: d, node: host}
}

// Permanent says the cluster refused for good (invalid object, forbidden,
// an application the driver does not know): retrying cannot help.
// Conflicts, throttling and server errors are not: the activity retries.
func (d *Driver) Permanent(err error) bool {
	var p permanentError
	return errors.As(err, &p) || apierrors.IsInvalid(err) || apierrors.IsForbidden(err) ||
		apierrors.IsBadRequest(err) || apierrors.IsMethodNotSupported(err) || apierrors.IsUnauthorized(err)
}

// NotFound says the warm pod (or window) is gone.
func (d *Driver) NotFound(err error) bool {
	return errors.Is(err, errGone) || apierrors.IsNotFound(err)
}

type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

func permanent(err error) error { return permanentError{err} }

var errGone = errors.New("the warm pod is gone")

// PodName is the warm pod of a lease: one name per lease, so a retried
// reserve finds the pod the first attempt made. Lease IDs name the app and
// host and may hold any character: the name keeps a readable slice of it
// and a digest of all of it.
func PodName(leaseID string) string {
	slug := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(leaseID), "-"), "-")
	if len(slug) > 40 {
		slug = strings.TrimRight(slug[:40], "-")
	}
	if slug == "" {
		return "warm-" + leaseDigest(leaseID)
	}
	return "warm-" + slug + "-" + leaseDigest(leaseID)[:10]
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

var labelValue = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// AppLabel is the app's value of LabelApp: its name when a label can hold
// it, else a digest of it (the annotation keeps the name).
func AppLabel(app string) string {
	if labelValue.MatchString(app) {
		return app
	}
	return leaseDigest(app)
}

// leaseDigest is the lease's label value: 16 hex digits of its SHA-256.
func leaseDigest(leaseID string) string {
	sum := sha256.Sum256([]byte(leaseID))
	return hex.EncodeToString(sum[:8])
}

type nodeClient struct {
	d       *Driver
	node    string
	refused error
}

func (c nodeClient) app(name string) (App, error) {
	if c.refused != nil {
		return App{}, c.refused
	}
	a, ok := c.d.Apps[name]
	if !ok {
		return App{}, permanent(fmt.Errorf("application %q is not in the driver's applications file", name))
	}
	return a, nil
}

// Reserve creates the warm pod (or opens the Knative window).
func (c nodeClient) Reserve(ctx context.Context, r activities.HostReservation) (time.Time, error) {
	a, err := c.app(r.App)
	if err != nil {
		return time.Time{}, err
	}
	if r.LeaseID == "" {
		return time.Time{}, permanent(errors.New("a lease needs an ID"))
	}
	until := c.d.now().Add(r.TTL).UTC()
	if a.KnativeService != "" {
		return until, c.d.openWindow(ctx, a, r.LeaseID, until)
	}
	tmpl, owner, err := c.d.template(ctx, a)
	if err != nil {
		return time.Time{}, err
	}
	pod, err := warmPod(a, tmpl, owner, c.node, r, until)
	if err != nil {
		return time.Time{}, err
	}
	pods := c.d.Client.CoreV1().Pods(a.Namespace)
	_, err = pods.Create(ctx, pod, metav1.CreateOptions{FieldManager: ManagedBy})
	if apierrors.IsAlreadyExists(err) {
		// A retry after a lost reply: the pod is the first attempt's.
		got, gerr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil {
			return time.Time{}, gerr
		}
		if got.Annotations[AnnotationLease] != r.LeaseID {
			return time.Time{}, permanent(fmt.Errorf("pod %s/%s exists and is not lease %s's", a.Namespace, pod.Name, r.LeaseID))
		}
		t, perr := time.Parse(time.RFC3339Nano, got.Annotations[AnnotationUntil])
		if perr != nil {
			return until, nil
		}
		return t, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("create warm pod %s/%s: %w", a.Namespace, pod.Name, err)
	}
	return until, nil
}

// Shadow waits for the pod's Ready condition (up to the application's
// ready timeout: an image pull is not the shadow's latency), then sends
// the application's shadow request to the pod's address and returns its
// latency in ms, which the loop holds to its bound.
func (c nodeClient) Shadow(ctx context.Context, leaseID string, _, _ float64) (float64, error) {
	if c.refused != nil {
		return 0, c.refused
	}
	a, addr, err := c.d.waitReady(ctx, leaseID)
	if err != nil {
		return 0, err
	}
	if a.KnativeService == "" {
		addr = fmt.Sprintf("http://%s:%d", addr, a.Port)
	}
	return c.d.shadow(ctx, a, addr)
}

// Extend moves the pod's expiry; the pod stays the same.
func (c nodeClient) Extend(ctx context.Context, leaseID, app string, ttl time.Duration) (time.Time, error) {
	a, err := c.app(app)
	if err != nil {
		return time.Time{}, err
	}
	until := c.d.now().Add(ttl).UTC()
	if a.KnativeService != "" {
		return until, c.d.extendWindow(ctx, a, leaseID, until)
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, AnnotationUntil, until.Format(time.RFC3339Nano))
	p, err := c.d.Client.CoreV1().Pods(a.Namespace).Patch(ctx, PodName(leaseID), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: ManagedBy})
	if err != nil {
		return time.Time{}, fmt.Errorf("extend warm pod %s/%s: %w", a.Namespace, PodName(leaseID), err)
	}
	// A pod that has failed (or is being deleted) is no warm instance:
	// the loop learns it is gone, and its release records how it ended.
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded || p.DeletionTimestamp != nil {
		return time.Time{}, fmt.Errorf("warm pod %s/%s: %s: %w", a.Namespace, p.Name, podNote(p), errGone)
	}
	return until, nil
}

// Serve is refused: requests reach the pods through the application's
// Service, not through Forewarm.
func (c nodeClient) Serve(context.Context, wire.HostServing) (wire.HostServed, error) {
	return wire.HostServed{}, permanent(errors.New("the Kubernetes driver serves no request: requests reach the warm pods through the application's Service (run loops in router mode)"))
}

// Release deletes the warm pod (or closes the window); a pod that had
// failed is reported as such.
func (c nodeClient) Release(ctx context.Context, leaseID string) (activities.HostReleased, error) {
	if c.refused != nil {
		return activities.HostReleased{}, c.refused
	}
	a, pod, err := c.d.findLease(ctx, leaseID)
	if err != nil {
		return activities.HostReleased{}, err
	}
	if pod == nil {
		return c.d.closeWindow(ctx, a, leaseID)
	}
	rel := activities.HostReleased{Released: true, HeldSeconds: c.d.now().Sub(pod.CreationTimestamp.Time).Seconds()}
	if pod.Status.Phase == corev1.PodFailed {
		rel = activities.HostReleased{State: "failed", Note: podNote(pod), EndedAt: c.d.now().UTC(), HeldSeconds: rel.HeldSeconds}
	}
	uid := pod.UID
	err = c.d.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil {
		return activities.HostReleased{}, fmt.Errorf("delete warm pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return rel, nil
}

// findLease finds the lease's pod in the namespaces of the configured
// applications (nil pod: a Knative window's lease).
func (d *Driver) findLease(ctx context.Context, leaseID string) (App, *corev1.Pod, error) {
	for _, ns := range d.podNamespaces() {
		p, err := d.Client.CoreV1().Pods(ns).Get(ctx, PodName(leaseID), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return App{}, nil, err
		}
		a, ok := d.Apps[p.Annotations[AnnotationApp]]
		if !ok || p.Annotations[AnnotationLease] != leaseID {
			return App{}, nil, permanent(fmt.Errorf("pod %s/%s is not a warm pod of a configured application", ns, p.Name))
		}
		return a, p, nil
	}
	if a, ok := d.windowOf(ctx, leaseID); ok {
		return a, nil, nil
	}
	return App{}, nil, fmt.Errorf("lease %s: %w", leaseID, errGone)
}

func podNote(p *corev1.Pod) string {
	if p.Status.Reason != "" || p.Status.Message != "" {
		return strings.TrimSpace(p.Status.Reason + " " + p.Status.Message)
	}
	for _, s := range p.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil {
			return fmt.Sprintf("container %s: %s (exit %d)", s.Name, t.Reason, t.ExitCode)
		}
	}
	return "pod failed"
}

// waitReady polls the lease's pod until it is Ready (or failed, or
// unschedulable, or the app's ready timeout passes) and returns its
// address; for a Knative window, the Service's URL once it is Ready.
func (d *Driver) waitReady(ctx context.Context, leaseID string) (App, string, error) {
	a, pod, err := d.findLease(ctx, leaseID)
	if err != nil {
		return App{}, "", err
	}
	// The API calls run on the caller's context: a client-side rate
	// limiter refuses a call that could end past a nearer deadline.
	deadline := time.NewTimer(a.Ready.D())
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if pod == nil {
			url, ready, err := d.knativeURL(ctx, a)
			if err != nil {
				return a, "", err
			}
			if ready {
				return a, url, nil
			}
		} else {
			switch {
			case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
				return a, "", permanent(fmt.Errorf("warm pod %s/%s ended before it was ready: %s", pod.Namespace, pod.Name, podNote(pod)))
			case podReady(pod) && pod.Status.PodIP != "":
				return a, pod.Status.PodIP, nil
			}
		}
		notReady := func() error {
			why := "not Ready"
			if pod != nil {
				why = pendingWhy(pod)
			}
			return permanent(fmt.Errorf("lease %s not ready within %s: %s", leaseID, a.Ready.D(), why))
		}
		select {
		case <-ctx.Done():
			return a, "", ctx.Err()
		case <-deadline.C:
			return a, "", notReady()
		case <-tick.C:
		}
		if pod != nil {
			next, err := d.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return a, "", err
			}
			pod = next
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// pendingWhy says why a pod is not ready (unschedulable: the scheduler's
// message).
func pendingWhy(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "not scheduled: " + c.Reason + " " + c.Message
		}
	}
	return "phase " + string(p.Status.Phase) + ", not Ready"
}

// shadow sends the application's shadow request to base and checks its
// status and latency; it returns the request's latency in ms.
func (d *Driver) shadow(ctx context.Context, a App, base string) (float64, error) {
	s := a.Shadow
	req, err := http.NewRequestWithContext(ctx, s.Method, base+s.Path, strings.NewReader(s.Body))
	if err != nil {
		return 0, permanent(err)
	}
	if s.ContentType != "" {
		req.Header.Set("Content-Type", s.ContentType)
	}
	start := time.Now()
	resp, err := d.http().Do(req)
	if err != nil {
		return 0, fmt.Errorf("shadow request to %s: %w", base, err)
	}
	resp.Body.Close()
	ms := float64(time.Since(start).Microseconds()) / 1000
	switch {
	case resp.StatusCode != s.ExpectStatus:
		return ms, permanent(fmt.Errorf("shadow request to %s answered %d, want %d", base, resp.StatusCode, s.ExpectStatus))
	case time.Duration(ms*float64(time.Millisecond)) > s.MaxLatency.D():
		return ms, permanent(fmt.Errorf("shadow request to %s took %.1f ms, more than %s", base, ms, s.MaxLatency.D()))
	}
	return ms, nil
}

// warmPod is the application's pod template made a warm pod of one lease.
func warmPod(a App, tmpl corev1.PodTemplateSpec, owner *metav1.OwnerReference, node string, r activities.HostReservation, until time.Time) (*corev1.Pod, error) {
	spec := *tmpl.Spec.DeepCopy()
	i := 0
	if a.Container != "" {
		i = slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == a.Container })
		if i < 0 {
			return nil, permanent(fmt.Errorf("application %s: the template has no container %q", a.App, a.Container))
		}
	}
	if len(spec.Containers) == 0 {
		return nil, permanent(fmt.Errorf("application %s: the template has no container", a.App))
	}
	c := &spec.Containers[i]
	if c.Resources.Requests == nil {
		c.Resources.Requests = corev1.ResourceList{}
	}
	if r.MemoryMB > 0 {
		mem := *resource.NewQuantity(int64(r.MemoryMB*(1<<20)), resource.BinarySI)
		c.Resources.Requests[corev1.ResourceMemory] = mem
		// A limit below the lease's request is raised to it: the pod must
		// be able to use what it holds.
		if l, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && l.Cmp(mem) < 0 {
			c.Resources.Limits[corev1.ResourceMemory] = mem
		}
	}
	if r.CPUMilli > 0 {
		cpu := *resource.NewMilliQuantity(r.CPUMilli, resource.DecimalSI)
		c.Resources.Requests[corev1.ResourceCPU] = cpu
		if l, ok := c.Resources.Limits[corev1.ResourceCPU]; ok && l.Cmp(cpu) < 0 {
			c.Resources.Limits[corev1.ResourceCPU] = cpu
		}
	}
	// Required on the chosen node, through the scheduler (which still
	// checks capacity), not by nodeName (which would bypass it).
	term := corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	spec.Affinity.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term}}}
	lbl := map[string]string{}
	for k, v := range tmpl.Labels {
		lbl[k] = v
	}
	lbl[LabelManagedBy], lbl[LabelLease], lbl[LabelApp] = ManagedBy, leaseDigest(r.LeaseID), AppLabel(a.App)
	ann := map[string]string{}
	for k, v := range tmpl.Annotations {
		ann[k] = v
	}
	ann[AnnotationUntil], ann[AnnotationLease], ann[AnnotationApp] = until.Format(time.RFC3339Nano), r.LeaseID, a.App
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: PodName(r.LeaseID), Namespace: a.Namespace, Labels: lbl, Annotations: ann}, Spec: spec}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p, nil
}

// template reads the application's pod template and the owner its warm
// pods get. A Deployment owns them as their controller: a pod that
// carries the Deployment's labels without a controller would be adopted
// by its ReplicaSet, which would then delete one pod too many.
func (d *Driver) template(ctx context.Context, a App) (corev1.PodTemplateSpec, *metav1.OwnerReference, error) {
	yes, no := true, false
	if a.Deployment != "" {
		dep, err := d.Client.AppsV1().Deployments(a.Namespace).Get(ctx, a.Deployment, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return corev1.PodTemplateSpec{}, nil, permanent(fmt.Errorf("application %s: deployment %s/%s not found", a.App, a.Namespace, a.Deployment))
		}
		if err != nil {
			return corev1.PodTemplateSpec{}, nil, fmt.Errorf("read deployment %s/%s: %w", a.Namespace, a.Deployment, err)
		}
		return dep.Spec.Template, &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID,
			Controller: &yes, BlockOwnerDeletion: &no}, nil
	}
	pt, err := d.Client.CoreV1().PodTemplates(a.Namespace).Get(ctx, a.PodTemplate, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return corev1.PodTemplateSpec{}, nil, permanent(fmt.Errorf("application %s: pod template %s/%s not found", a.App, a.Namespace, a.PodTemplate))
	}
	if err != nil {
		return corev1.PodTemplateSpec{}, nil, fmt.Errorf("read pod template %s/%s: %w", a.Namespace, a.PodTemplate, err)
	}
	return pt.Template, &metav1.OwnerReference{APIVersion: "v1", Kind: "PodTemplate", Name: pt.Name, UID: pt.UID,
		Controller: &yes, BlockOwnerDeletion: &no}, nil
}
