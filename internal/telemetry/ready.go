package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// ReadyEvery is the least time between two readiness checks: however many
// probes reach /readyz, the services behind it (Temporal, ClickHouse) are
// asked at most once per ReadyEvery. ReadyTimeout bounds one check.
const (
	ReadyEvery   = 2 * time.Second
	ReadyTimeout = 3 * time.Second
)

// Unready is a failed readiness check: Part is what is not ready in one
// fixed word ("starting", "temporal", "store"), the only thing /readyz
// shows; Err is the detail, for the log.
type Unready struct {
	Part string
	Err  error
}

func (u *Unready) Error() string { return u.Part + ": " + u.Err.Error() }
func (u *Unready) Unwrap() error { return u.Err }

// readiness answers from the result of the last check, started in the
// background by a probe once the result is ReadyEvery old (one at a time).
// Only the very first probe waits for a check; every other probe answers
// at once from the state kept.
type readiness struct {
	check func(context.Context) error
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	checked time.Time     // when the last check started
	have    bool          // a check has ended
	err     error         // its result
	running chan struct{} // closed when the check in flight ends; nil: none
}

// state is the last check's result, starting a new check when it is stale.
func (r *readiness) state(ctx context.Context) error {
	r.mu.Lock()
	if r.running == nil && (!r.have || time.Since(r.checked) >= r.every) {
		r.running, r.checked = make(chan struct{}), time.Now()
		go r.run(r.running)
	}
	running, have, err := r.running, r.have, r.err
	r.mu.Unlock()
	if have {
		return err
	}
	select {
	case <-running:
	case <-ctx.Done():
		return &Unready{Part: "starting", Err: errors.New("the first readiness check has not ended")}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// run checks once and keeps the result; a change is logged with its detail.
func (r *readiness) run(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	err := r.check(ctx)
	cancel()
	r.mu.Lock()
	was, had := r.err, r.have
	r.err, r.have, r.running = err, true, nil
	r.mu.Unlock()
	close(done)
	switch {
	case err != nil && (!had || was == nil || part(was) != part(err)):
		r.logger().Warn("not ready", "part", part(err), "err", err)
	case err == nil && had && was != nil:
		r.logger().Info("ready again")
	}
}

func (r *readiness) logger() *slog.Logger {
	if r.log != nil {
		return r.log
	}
	return slog.Default()
}

// part is the word /readyz shows for a failed check.
func part(err error) string {
	var u *Unready
	if errors.As(err, &u) && u.Part != "" {
		return u.Part
	}
	return ""
}
