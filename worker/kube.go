package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/forewarm/forewarm/kube"
)

// kubeSettings configure the Kubernetes driver (--hosts kubernetes).
type kubeSettings struct {
	Apps         string
	Config       string
	Nodes        string
	JanitorEvery time.Duration

	apps  map[string]kube.App
	nodes labels.Selector
}

// check reads the applications file and the node selector, so a mistake
// stops the worker at start with the file and field named.
func (k *kubeSettings) check() error {
	if k.Apps == "" {
		return errors.New("--hosts kubernetes needs --kube-apps: the applications the driver may warm")
	}
	apps, err := kube.LoadApps(k.Apps)
	if err != nil {
		return fmt.Errorf("--kube-apps: %w", err)
	}
	sel, err := labels.Parse(k.Nodes)
	if err != nil {
		return fmt.Errorf("--kube-nodes %q: %w", k.Nodes, err)
	}
	if k.JanitorEvery < time.Second {
		return fmt.Errorf("--kube-janitor-every %v: must be at least 1s", k.JanitorEvery)
	}
	k.apps, k.nodes = apps, sel
	return nil
}

// driver connects to the cluster: the kubeconfig file, or the pod's own
// service account when none is named.
func (k *kubeSettings) driver(log *slog.Logger) (*kube.Driver, error) {
	var cfg *rest.Config
	var err error
	if k.Config != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", k.Config)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("--hosts kubernetes: connect to the cluster: %w (name a kubeconfig with --kubeconfig outside a pod)", err)
	}
	cfg.UserAgent = "forewarm-worker"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kube.Driver{Client: c, Dynamic: dyn, Apps: k.apps, Nodes: k.nodes, Log: log}, nil
}
