package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/forewarm/forewarm/gateway"
	"github.com/forewarm/forewarm/replay"
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
