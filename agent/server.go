package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/forewarm/forewarm/agent/api"
)

// MinTokenLen is the shortest bearer token the agent accepts to run with.
const MinTokenLen = 16

// Handler serves the agent's HTTP API (see package api for the endpoints).
// Every path but /healthz and /readyz needs "Authorization: Bearer
// <token>"; a call without it is answered 401 before anything else is
// looked at, and logged at most once per Config.UnauthorizedLogEvery.
func (a *Agent) Handler(token string) (http.Handler, error) {
	if len(token) < MinTokenLen {
		return nil, fmt.Errorf("bearer token must be at least %d characters (got %d)", MinTokenLen, len(token))
	}
	want := sha256.Sum256([]byte(token))
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathInfo, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.Info()) })
	mux.HandleFunc("GET "+api.PathMetrics, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.Metrics()) })
	mux.Handle("GET "+api.PathPrometheus, a.prom.handler())
	mux.HandleFunc("GET "+api.PathLeases, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.Leases()) })
	mux.HandleFunc("POST "+api.PathLeases, a.handleReserve)
	mux.HandleFunc("GET "+api.PathLeases+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		l, err := a.Lease(r.PathValue("id"))
		reply(w, http.StatusOK, l, err)
	})
	mux.HandleFunc("DELETE "+api.PathLeases+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		res, err := a.Release(r.PathValue("id"))
		reply(w, http.StatusOK, res, err)
	})
	mux.HandleFunc("POST "+api.PathLeases+"/{id}/shadow", func(w http.ResponseWriter, r *http.Request) {
		var req api.ShadowRequest
		if !decode(w, r, &req) {
			return
		}
		res, err := a.Shadow(r.Context(), r.PathValue("id"), req)
		reply(w, http.StatusOK, res, err)
	})
	mux.HandleFunc("POST "+api.PathLeases+"/{id}/extend", func(w http.ResponseWriter, r *http.Request) {
		var req api.ExtendRequest
		if !decode(w, r, &req) {
			return
		}
		l, err := a.Extend(r.PathValue("id"), req)
		reply(w, http.StatusOK, l, err)
	})
	mux.HandleFunc("GET "+api.PathApps, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.Apps()) })
	mux.HandleFunc(api.PathInstances+"/{id}/http/{path...}", a.handleInstance)
	mux.HandleFunc(api.PathInstances+"/{id}/http", a.handleInstance)
	mux.HandleFunc("POST "+api.PathServe, func(w http.ResponseWriter, r *http.Request) {
		var req api.ServeRequest
		if !decode(w, r, &req) {
			return
		}
		res, err := a.Serve(r.Context(), req)
		reply(w, http.StatusOK, res, err)
	})

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		switch r.URL.Path {
		case api.PathHealth:
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "host_id": a.cfg.HostID})
			return
		case api.PathReady:
			if !a.Ready() {
				writeError(w, errorf(api.CodeShuttingDown, "host agent %s is shutting down", a.cfg.HostID))
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "host_id": a.cfg.HostID})
			return
		}
		if !authorized(r, want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="forewarm-hostagent"`)
			writeError(w, errorf(api.CodeUnauthorized, "missing or wrong bearer token"))
			if ok, skipped := a.unauth.allow(time.Now()); ok {
				a.log.Warn("unauthorized call", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
					"not_logged_since_last", skipped)
			}
			return
		}
		mux.ServeHTTP(w, r)
		if a.log.Enabled(r.Context(), slog.LevelDebug) {
			a.log.Debug("call", "method", r.Method, "path", r.URL.Path, "ms", msOf(time.Since(start)))
		}
	}), nil
}

// MetricsHandler serves GET /metrics (the Prometheus text format) without
// a token and nothing else: one scrape job cannot hold every host's token,
// and a listener of its own keeps the API off that port.
func (a *Agent) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+api.PathPrometheus, a.prom.handler())
	return mux
}

// logLimiter lets one log line through per interval and counts the rest,
// so a flood of bad calls cannot flood the log.
type logLimiter struct {
	every   time.Duration
	mu      sync.Mutex
	last    time.Time
	skipped int
}

// allow says whether to log now and how many lines were skipped before.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.skipped++
		return false, 0
	}
	skipped := l.skipped
	l.last, l.skipped = now, 0
	return true, skipped
}

// authorized compares the presented token with the wanted one in constant
// time; hashing both first keeps the length secret too.
func authorized(r *http.Request, want [32]byte) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (a *Agent) handleReserve(w http.ResponseWriter, r *http.Request) {
	var req api.ReserveRequest
	if !decode(w, r, &req) {
		return
	}
	l, created, err := a.Reserve(r.Context(), req)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	reply(w, status, l, err)
}

// decode reads exactly one JSON object of at most api.MaxBodyBytes with no
// unknown fields, answering 400/413 itself when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, errorf(api.CodeTooLarge, "request body over %d bytes", api.MaxBodyBytes))
		return false
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("empty body; a JSON object is required")
	}
	writeError(w, errorf(api.CodeBadRequest, "request body: %v", err))
	return false
}

func reply(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, status, v)
}

func writeError(w http.ResponseWriter, err error) {
	code := CodeOf(err)
	msg := err.Error()
	var e *Error
	if errors.As(err, &e) {
		msg = e.Msg
	}
	writeJSON(w, statusOf(code), api.ErrorBody{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
