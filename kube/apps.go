// Package kube warms an application's own workload on Kubernetes: the
// hosts are the cluster's nodes, and a warm instance is a pod of the
// application's own template (its Deployment's, or a PodTemplate's),
// labelled as the template labels it so the application's Service sends it
// traffic once it is Ready, with the lease's memory and CPU as its
// requests, and required on the node the affinity ranking chose. For an
// application served by Knative, a warm window is the Service's min-scale
// annotation instead.
//
// The Driver answers the loops' host calls (activities.HostDirectory and
// activities.HostClients): reserve creates the pod, shadow waits for its
// Ready condition and sends the application's shadow request to it, extend
// moves its expiry annotation, release deletes it. The Janitor deletes any
// warm pod past its expiry: the safety net for a loop or worker lost
// while it held one. A warm pod is controlled by its Deployment (owner
// reference), so deleting the application deletes its warm pods too.
package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/forewarm/forewarm/appspec"
)

// App is one application the driver may warm, as the operator describes it.
type App struct {
	App       string `json:"app"`
	Namespace string `json:"namespace"`
	// Exactly one of Deployment, PodTemplate and KnativeService: where the
	// warm instance comes from.
	Deployment     string `json:"deployment,omitempty"`
	PodTemplate    string `json:"pod_template,omitempty"`
	KnativeService string `json:"knative_service,omitempty"`
	// Container takes the lease's requests (default: the first).
	Container string `json:"container,omitempty"`
	// Port is where the shadow request goes on the pod (pods only).
	Port int `json:"port,omitempty"`
	// Ready bounds the wait for the pod's Ready condition (default 2m).
	Ready  appspec.Duration `json:"ready_timeout,omitzero"`
	Shadow appspec.Shadow   `json:"shadow"`
}

// Apps is the driver's configuration file: {"apps": [...]}.
type Apps struct {
	Apps []App `json:"apps"`
}

// DefaultReadyTimeout bounds the wait for a warm pod to turn Ready.
const DefaultReadyTimeout = 2 * time.Minute

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// Validate checks every field and fills the defaults; errors name the
// field ("apps[2].port").
func (a *App) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if a.App == "" {
		bad("app", "is required")
	}
	if !dnsLabel.MatchString(a.Namespace) {
		bad("namespace", "%q is not a namespace name", a.Namespace)
	}
	sources := 0
	for field, name := range map[string]string{"deployment": a.Deployment, "pod_template": a.PodTemplate, "knative_service": a.KnativeService} {
		if name == "" {
			continue
		}
		sources++
		if !dnsSubdomain.MatchString(name) {
			bad(field, "%q is not an object name", name)
		}
	}
	if sources != 1 {
		bad("deployment", "name exactly one of deployment, pod_template and knative_service (got %d)", sources)
	}
	if a.KnativeService == "" && (a.Port < 1 || a.Port > 65535) {
		bad("port", "%d is not a port: the shadow request goes to the pod on it", a.Port)
	}
	if a.Ready == 0 {
		a.Ready = appspec.Duration(DefaultReadyTimeout)
	}
	if a.Ready < 0 {
		bad("ready_timeout", "%s must be > 0", a.Ready.D())
	}
	if err := a.Shadow.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// LoadApps reads and checks the driver's configuration file; an error
// names the file and the field.
func LoadApps(path string) (map[string]App, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f Apps
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(f.Apps) == 0 {
		return nil, fmt.Errorf("%s: apps: no application listed", path)
	}
	out := make(map[string]App, len(f.Apps))
	for i, a := range f.Apps {
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("%s: apps[%d]: %w", path, i, err)
		}
		if _, dup := out[a.App]; dup {
			return nil, fmt.Errorf("%s: apps[%d].app: %q is listed twice", path, i, a.App)
		}
		out[a.App] = a
	}
	return out, nil
}
