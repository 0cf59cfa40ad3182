package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/forewarm/forewarm/activities"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
)

// KnativeServices is the resource of Knative Serving's Service.
var KnativeServices = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}

const (
	// MinScale is Knative's annotation on a Service's revision template:
	// the autoscaler keeps at least that many pods.
	MinScale = "autoscaling.knative.dev/min-scale"
	// AnnotationLeases on the Service's own metadata (not its template, so
	// it makes no revision) lists the open windows: lease ID → expiry.
	AnnotationLeases = "forewarm.io/leases"
)

// A Knative window: min-scale is the number of open windows while one is
// open, and is removed with the last. Updates read, change and write the
// Service, retried on conflict as the API expects.
func (d *Driver) openWindow(ctx context.Context, a App, leaseID string, until time.Time) error {
	return d.changeWindows(ctx, a, func(w map[string]string) error {
		w[leaseID] = until.Format(time.RFC3339Nano)
		return nil
	})
}

func (d *Driver) extendWindow(ctx context.Context, a App, leaseID string, until time.Time) error {
	return d.changeWindows(ctx, a, func(w map[string]string) error {
		if _, ok := w[leaseID]; !ok {
			return fmt.Errorf("lease %s: %w", leaseID, errGone)
		}
		w[leaseID] = until.Format(time.RFC3339Nano)
		return nil
	})
}

func (d *Driver) closeWindow(ctx context.Context, a App, leaseID string) (activities.HostReleased, error) {
	rel := activities.HostReleased{}
	err := d.changeWindows(ctx, a, func(w map[string]string) error {
		if _, ok := w[leaseID]; !ok {
			return fmt.Errorf("lease %s: %w", leaseID, errGone)
		}
		delete(w, leaseID)
		rel.Released = true
		return nil
	})
	return rel, err
}

func (d *Driver) service(ctx context.Context, a App) (*unstructured.Unstructured, error) {
	if d.Dynamic == nil {
		return nil, permanent(fmt.Errorf("application %s is served by Knative, but the driver has no dynamic client", a.App))
	}
	s, err := d.Dynamic.Resource(KnativeServices).Namespace(a.Namespace).Get(ctx, a.KnativeService, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, permanent(fmt.Errorf("application %s: Knative Service %s/%s not found", a.App, a.Namespace, a.KnativeService))
	}
	return s, err
}

// changeWindows applies change to the Service's open windows (expired
// ones dropped) and sets min-scale from what is left.
func (d *Driver) changeWindows(ctx context.Context, a App, change func(map[string]string) error) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := d.service(ctx, a)
		if err != nil {
			return err
		}
		w := windows(s)
		now := d.now()
		for id, v := range w {
			if t, err := time.Parse(time.RFC3339Nano, v); err != nil || !t.After(now) {
				delete(w, id)
			}
		}
		if err := change(w); err != nil {
			return err
		}
		setWindows(s, w)
		_, err = d.Dynamic.Resource(KnativeServices).Namespace(a.Namespace).Update(ctx, s, metav1.UpdateOptions{FieldManager: ManagedBy})
		return err
	})
}

func windows(s *unstructured.Unstructured) map[string]string {
	w := map[string]string{}
	if v := s.GetAnnotations()[AnnotationLeases]; v != "" {
		_ = json.Unmarshal([]byte(v), &w) // a damaged list is replaced
	}
	return w
}

func setWindows(s *unstructured.Unstructured, w map[string]string) {
	ann := s.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	tmpl, _, _ := unstructured.NestedStringMap(s.Object, "spec", "template", "metadata", "annotations")
	if tmpl == nil {
		tmpl = map[string]string{}
	}
	if len(w) == 0 {
		delete(ann, AnnotationLeases)
		delete(tmpl, MinScale)
	} else {
		b, _ := json.Marshal(w)
		ann[AnnotationLeases] = string(b)
		tmpl[MinScale] = strconv.Itoa(len(w))
	}
	s.SetAnnotations(ann)
	_ = unstructured.SetNestedStringMap(s.Object, tmpl, "spec", "template", "metadata", "annotations")
}

// windowOf finds the Knative application holding the lease's window.
func (d *Driver) windowOf(ctx context.Context, leaseID string) (App, bool) {
	for _, a := range d.Apps {
		if a.KnativeService == "" || d.Dynamic == nil {
			continue
		}
		s, err := d.service(ctx, a)
		if err != nil {
			continue
		}
		if _, ok := windows(s)[leaseID]; ok {
			return a, true
		}
	}
	return App{}, false
}

// knativeURL is the Service's URL and whether it is Ready (Knative's own
// status, written by its controller).
func (d *Driver) knativeURL(ctx context.Context, a App) (string, bool, error) {
	s, err := d.service(ctx, a)
	if err != nil {
		return "", false, err
	}
	url, _, _ := unstructured.NestedString(s.Object, "status", "url")
	conds, _, _ := unstructured.NestedSlice(s.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" && m["status"] == "True" && url != "" {
			return url, true, nil
		}
	}
	return url, false, nil
}
