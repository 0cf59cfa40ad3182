package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/forewarm/forewarm/appspec"
	"github.com/forewarm/forewarm/gateway"
	"github.com/forewarm/forewarm/replay"
	"github.com/forewarm/forewarm/trace"
)

// gatewaySender sends each request as a real HTTP request through the
// gateway, to the application's own path; the gateway's Forewarm-Outcome
// header says whether a warm instance served it.
func gatewaySender(f replayFlags, counts *replayCounts) (replay.Sender, error) {
	u, err := url.Parse(f.gateway)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErr("--gateway %q: want http://host:port", f.gateway)
	}
	if !strings.HasPrefix(f.gatewayPath, "/") {
		return nil, usageErr("--gateway-path %q: must start with /", f.gatewayPath)
	}
	base := strings.TrimRight(f.gateway, "/")
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(64, f.inFlight)
	hc := &http.Client{Transport: t, Timeout: 5 * time.Minute}
	return func(ctx context.Context, r replay.Request) error {
		// Requests already started finish even after Ctrl-C.
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, base+"/"+r.App+f.gatewayPath, strings.NewReader(f.gatewayBody))
		if err != nil {
			return counts.fail(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return counts.fail(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return counts.fail(fmt.Errorf("%s: %s: %s", r.App, resp.Status, strings.TrimSpace(string(body))))
		}
		if resp.Header.Get(gateway.HeaderOutcome) == "warm" {
			counts.warmed()
		}
		return nil
	}, nil
}

// writeAppSpecs writes a spec for each of apps (all of the trace's when
// nil) into f.writeSpecs: the program of one of the templates, picked by a
// hash of the application, with absolute paths, and the application's
// own memory size from the trace (never below the template's, which its
// program needs).
func writeAppSpecs(tr *trace.Trace, apps []string, f replayFlags) error {
	if len(f.specTemplates) == 0 {
		return usageErr("--write-specs needs at least one --spec-template")
	}
	var templates []*appspec.Spec
	for _, p := range f.specTemplates {
		data, err := os.ReadFile(p)
		if err != nil {
			return usageErr("--spec-template: %v", err)
		}
		s, err := appspec.Parse(p, data)
		if err != nil {
			return usageErr("--spec-template: %v", err)
		}
		abs, err := filepath.Abs(filepath.Dir(p))
		if err != nil {
			return err
		}
		s.Folder = abs
		templates = append(templates, s)
	}
	if err := os.MkdirAll(f.writeSpecs, 0o755); err != nil {
		return fmt.Errorf("--write-specs: %w", err)
	}
	byID := map[string]*trace.App{}
	for i := range tr.Apps {
		byID[tr.Apps[i].ID] = &tr.Apps[i]
	}
	if apps == nil {
		for _, a := range tr.Apps {
			apps = append(apps, a.ID)
		}
	}
	for _, id := range apps {
		a, ok := byID[id]
		if !ok {
			return usageErr("--app %s: not in the trace", id)
		}
		h := fnv.New32a()
		h.Write([]byte(id))
		s := *templates[int(h.Sum32())%len(templates)]
		s.App, s.Version = id, "1"
		s.Command = append([]string{s.Program()}, s.Command[1:]...)
		s.Dir = s.WorkDir()
		s.MemoryMB = max(s.MemoryMB, math.Ceil(a.MemoryMB*f.memScale))
		if err := s.Validate(); err != nil {
			return fmt.Errorf("spec of %s: %w", id, err)
		}
		b, err := json.MarshalIndent(&s, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(f.writeSpecs, id+".json"), append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("--write-specs: %w", err)
		}
	}
	fmt.Printf("%d application specs written to %s\n", len(apps), f.writeSpecs)
	return nil
}
