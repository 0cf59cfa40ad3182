package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

// The real agent is exercised through this client in package agent's
// tests; these check the client's own job: the wire body and the error
// classification activities rely on.

func TestReserveSendsTheWireBodyWithToken(t *testing.T) {
	var got api.ReserveRequest
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Errorf("decode: %v", err)
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(api.Lease{PreparationID: got.PreparationID, State: api.StateReady})
	}))
	defer srv.Close()
	c := client.New(srv.URL+"/", "tok")
	l, err := c.Reserve(context.Background(), client.ReserveRequest{PreparationID: "p1", App: "a", MemoryMB: 1.5, DiskMB: 2, CPUMilli: 3, TTL: 90 * time.Second})
	if err != nil || l.PreparationID != "p1" {
		t.Fatalf("Reserve = %+v, %v", l, err)
	}
	want := api.ReserveRequest{PreparationID: "p1", App: "a", MemoryMB: 1.5, DiskMB: 2, CPUMilli: 3, TTLSeconds: 90}
	if got != want || auth != "Bearer tok" {
		t.Errorf("sent %+v with %q, want %+v with Bearer tok", got, auth, want)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	cases := []struct {
		status    int
		body      string
		code      string
		permanent bool
		sentinel  error
	}{
		{409, `{"code":"over_capacity","message":"memory: need 5 MB"}`, api.CodeOverCapacity, true, client.ErrOverCapacity},
		{403, `{"code":"wrong_app","message":"x"}`, api.CodeWrongApp, true, client.ErrWrongApp},
		{410, `{"code":"gone","message":"x"}`, api.CodeGone, true, client.ErrGone},
		{409, `{"code":"already_claimed","message":"x"}`, api.CodeClaimed, true, client.ErrClaimed},
		{401, `{"code":"unauthorized","message":"x"}`, api.CodeUnauthorized, true, client.ErrUnauthorized},
		{503, `{"code":"shutting_down","message":"x"}`, api.CodeShuttingDown, false, client.ErrShuttingDown},
		{500, `{"code":"internal","message":"disk full"}`, api.CodeInternal, false, nil},
		{502, `bad gateway`, "", false, nil},
		// The same start on the same host fails the same way: try another.
		{502, `{"code":"start_failed","message":"readiness: /healthz not ready within 30s"}`, api.CodeStartFailed, true, client.ErrStartFailed},
		{404, `{"code":"unknown_spec","message":"x"}`, api.CodeUnknownSpec, true, client.ErrUnknownSpec},
		{502, `{"code":"instance_failed","message":"x"}`, api.CodeInstanceDown, false, client.ErrInstanceDown},
	}
	for _, tc := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, tc.body)
		}))
		_, err := client.New(srv.URL, "tok").Serve(context.Background(), client.ServeRequest{RequestID: "r", App: "a"})
		srv.Close()
		var e *client.Error
		if !errors.As(err, &e) || e.Status != tc.status || client.Code(err) != tc.code || client.IsPermanent(err) != tc.permanent {
			t.Errorf("%d %s: %v (permanent %v), want code %q permanent %v", tc.status, tc.body, err, client.IsPermanent(err), tc.code, tc.permanent)
		}
		if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
			t.Errorf("%d: errors.Is(%v, %v) is false", tc.status, err, tc.sentinel)
		}
		if errors.Is(err, client.ErrNotFound) {
			t.Errorf("%d: matched ErrNotFound", tc.status)
		}
	}
}

func TestNetworkFailureIsTransient(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	err := client.New(url, "tok").Release(context.Background(), "p1")
	if err == nil || client.IsPermanent(err) || client.Code(err) != "" {
		t.Errorf("release against a closed port: %v (permanent %v), want a transient error", err, client.IsPermanent(err))
	}
}

func TestUnsafeIDIsRefusedWithoutACall(t *testing.T) {
	called := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
	defer srv.Close()
	c := client.New(srv.URL, "tok")
	if err := c.Release(context.Background(), "../etc"); !errors.Is(err, client.ErrBadRequest) {
		t.Errorf("release of ../etc: %v", err)
	}
	if _, err := c.Shadow(context.Background(), client.ShadowRequest{PreparationID: "a/b"}); !errors.Is(err, client.ErrBadRequest) {
		t.Errorf("shadow of a/b: %v", err)
	}
	if called {
		t.Error("the client sent a request with an unsafe ID in the path")
	}
}

// An agent answering with a redirect does not get the client to send its
// token anywhere else.
func TestRedirectsAreNotFollowed(t *testing.T) {
	elsewhere := false
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere = true }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	_, err := client.New(srv.URL, "tok").Info(context.Background())
	var e *client.Error
	if !errors.As(err, &e) || e.Status != http.StatusTemporaryRedirect || elsewhere {
		t.Errorf("redirect: %v (followed: %v), want a 307 refusal and no call elsewhere", err, elsewhere)
	}
}

func TestExtendSendsTheWireBody(t *testing.T) {
	var got api.ExtendRequest
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Errorf("decode: %v", err)
		}
		_ = json.NewEncoder(w).Encode(api.Lease{PreparationID: "p1", State: api.StateReady})
	}))
	defer srv.Close()
	l, err := client.New(srv.URL, "tok").Extend(context.Background(), "p1", 90*time.Second, "app-a")
	if err != nil || l.PreparationID != "p1" {
		t.Fatalf("Extend = %+v, %v", l, err)
	}
	if path != "/v1/leases/p1/extend" || got != (api.ExtendRequest{TTLSeconds: 90, App: "app-a"}) {
		t.Errorf("sent %+v to %s", got, path)
	}
	if _, err := client.New(srv.URL, "tok").Extend(context.Background(), "../p", time.Minute, ""); !errors.Is(err, client.ErrBadRequest) {
		t.Errorf("extend of an unsafe ID: %v", err)
	}
}

// A newer client that uses no new feature sends exactly what an older
// agent (which refuses unknown fields) accepts.
func TestServeWithoutNewFeaturesSendsNoNewFields(t *testing.T) {
	var raw map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&raw)
		_ = json.NewEncoder(w).Encode(api.ServeResult{})
	}))
	defer srv.Close()
	if _, err := client.New(srv.URL, "tok").Serve(context.Background(), client.ServeRequest{RequestID: "r", App: "a", PreparationID: "p", MemoryMB: 1, FallbackCold: true}); err != nil {
		t.Fatal(err)
	}
	for k := range raw {
		if strings.HasPrefix(k, "keep_") {
			t.Errorf("field %s sent without a keep", k)
		}
	}
}
