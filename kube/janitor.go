package kube

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Janitor deletes the warm pods past their expiry and closes the expired
// Knative windows: the safety net when a loop or its worker is lost while
// it holds one. Every worker that runs the driver runs one; two deleting
// the same pod is harmless (the second finds it gone).
type Janitor struct {
	Driver *Driver
	// Every is how often it looks (default 10 s): a lost warm pod lives at
	// most its TTL plus this.
	Every time.Duration
}

// Run sweeps until ctx ends.
func (j *Janitor) Run(ctx context.Context) {
	every := j.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := j.Sweep(ctx); err != nil {
			j.Driver.logger().Warn("warm pod janitor", "err", err)
		} else if n > 0 {
			j.Driver.logger().Info("warm pod janitor deleted expired warm pods", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep deletes what has expired once and returns how many pods (and
// windows) it ended.
func (j *Janitor) Sweep(ctx context.Context) (int, error) {
	d := j.Driver
	now := d.now()
	n := 0
	for _, ns := range d.podNamespaces() {
		pods, err := d.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy + "," + LabelLease})
		if err != nil {
			return n, fmt.Errorf("list warm pods in %s: %w", ns, err)
		}
		for _, p := range pods.Items {
			until, err := time.Parse(time.RFC3339Nano, p.Annotations[AnnotationUntil])
			// A warm pod without a readable expiry was not made by the
			// driver as it is: it goes after the longest lease an agent
			// would grant.
			if err != nil {
				until = p.CreationTimestamp.Add(24 * time.Hour)
			}
			if p.DeletionTimestamp != nil || until.After(now) {
				continue
			}
			uid := p.UID
			err = d.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return n, fmt.Errorf("delete expired warm pod %s/%s: %w", ns, p.Name, err)
			}
			if err == nil {
				n++
			}
		}
	}
	for _, a := range d.Apps {
		if a.KnativeService == "" || d.Dynamic == nil {
			continue
		}
		s, err := d.service(ctx, a)
		if err != nil {
			return n, err
		}
		w := windows(s)
		expired := 0
		for _, v := range w {
			if t, err := time.Parse(time.RFC3339Nano, v); err != nil || !t.After(now) {
				expired++
			}
		}
		if expired == 0 {
			continue
		}
		// changeWindows drops the expired ones and sets min-scale.
		if err := d.changeWindows(ctx, a, func(map[string]string) error { return nil }); err != nil {
			return n, fmt.Errorf("close expired windows of %s: %w", a.App, err)
		}
		n += expired
	}
	return n, nil
}
