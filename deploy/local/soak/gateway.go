package main

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/agent/api"
	agentclient "github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/internal/faults"
	"github.com/forewarm/forewarm/replay"
	"github.com/forewarm/forewarm/store"
)

// The gateway mode (--traffic gateway, what `make soak` runs): the
// agents run every application as a real process of samples/trivial
// (--spec-dir), the loops read the gateway's arrivals (router mode), and
// the replay sends real HTTP requests through a gateway process. Besides
// the worker and an agent, the gateway is SIGKILLed and restarted (its
// spool keeps its counts) and one instance process is SIGKILLed (its
// agent must fail its lease).
//
// Requests are counted by what their client saw:
//   - answered: an HTTP answer came back (any status): the gateway counted
//     it before forwarding, so it must be in the arrivals exactly once;
//   - cut: the connection broke after it was made (the gateway was
//     killed with the request in flight): it may or may not have been
//     spooled before the kill, so it may or may not be counted;
//   - refused: no connection (the gateway was down): never counted.
//
// The check is answered <= counted <= answered + cut, with counted the
// sum of the run's arrivals over every bin (store.BusyBins). The client
// keeps no connection alive, so no request is sent again by the HTTP
// client on a new connection behind the soak's back.

// trafficGateway and trafficWorkflows are the --traffic modes.
const (
	trafficGateway   = "gateway"
	trafficWorkflows = "workflows"
)

// gatewayKeepTTL is the TTL of an instance the gateway starts (its loop,
// when it has one, keeps or releases it).
const gatewayKeepTTL = 20 * time.Second

// httpTraffic sends the replay's requests through the gateway and counts
// what came back.
type httpTraffic struct {
	url                                  string
	seed                                 uint64
	client                               *http.Client
	sent, answered, ok, cut, refused, nf atomic.Int64
}

func newHTTPTraffic(url string, seed uint64) *httpTraffic {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true // one connection per request: never resent by the client
	return &httpTraffic{url: url, seed: seed, client: &http.Client{Transport: t, Timeout: time.Minute}}
}

func (h *httpTraffic) send(ctx context.Context, q replay.Request) error {
	id := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%d/%s/%d/%d", h.seed, q.App, q.Bin, q.Seq)).String()
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, h.url+"/"+q.App+"/", nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Request-Id", id)
	h.sent.Add(1)
	resp, err := h.client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			h.refused.Add(1)
		} else {
			h.cut.Add(1)
		}
		return err
	}
	defer resp.Body.Close()
	var buf [512]byte
	for {
		if _, err := resp.Body.Read(buf[:]); err != nil {
			break
		}
	}
	h.answered.Add(1)
	switch resp.StatusCode {
	case http.StatusOK:
		h.ok.Add(1)
	case http.StatusNotFound:
		h.nf.Add(1) // unknown_app: not counted by the gateway, and a failure here
	}
	return nil
}

// writeSpecs writes one spec per application, each running the trivial
// sample at bin, into dir (readable by the instance user).
func writeSpecs(dir, bin string, apps []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, app := range apps {
		spec := fmt.Sprintf(`{"app": %q, "version": "1", "command": [%q],
  "readiness": {"path": "/healthz", "timeout": "10s", "interval": "10ms"},
  "shadow": {"method": "GET", "path": "/", "expect_status": 200, "max_latency": "2s"},
  "memory_mb": 32, "cpu_milli": 500, "concurrency": 16, "stop_grace": "2s"}`, app, bin)
		if err := os.WriteFile(filepath.Join(dir, app+".json"), []byte(spec), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// countArrivals sums the arrivals of apps over [from, to); it returns
// them by application too.
func countArrivals(ctx context.Context, st *store.Store, apps []string, from, to time.Time) (int64, map[string]store.BusyBins, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	busy, err := st.BusyBins(cctx, from, to, bin)
	if err != nil {
		return 0, nil, fmt.Errorf("read the arrivals: %w", err)
	}
	var n int64
	for _, a := range apps {
		for _, c := range busy[a].Counts {
			n += int64(c)
		}
	}
	return n, busy, nil
}

// killInstance SIGKILLs one instance process (picked by r among the live
// instance leases of the agents) and waits for its agent to end the lease;
// it returns what it killed, or an error when none ran or the agent did
// not notice.
func killInstance(r *mrand.Rand, agents []string, urls map[string]string, root string) (string, error) {
	type cand struct {
		agent, lease string
		pid          int
	}
	var cands []cand
	for _, id := range agents {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ls, err := agentclient.New(urls[id], api.DeriveToken([]byte(root), id)).Leases(ctx)
		cancel()
		if err != nil {
			continue
		}
		for _, l := range ls {
			if l.Instance != nil && l.Instance.PID > 0 && l.State == api.StateReady {
				cands = append(cands, cand{id, l.PreparationID, l.Instance.PID})
			}
		}
	}
	if len(cands) == 0 {
		return "", errNoInstance
	}
	c := cands[r.IntN(len(cands))]
	if err := syscall.Kill(c.pid, syscall.SIGKILL); err != nil {
		return "", fmt.Errorf("SIGKILL instance pid %d (lease %s on %s): %w", c.pid, c.lease, c.agent, err)
	}
	what := fmt.Sprintf("instance pid %d (lease %s on %s)", c.pid, c.lease, c.agent)
	cl := agentclient.New(urls[c.agent], api.DeriveToken([]byte(root), c.agent))
	err := waitFor("agent "+c.agent+" to end the lease of the killed "+what, 15*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ls, err := cl.Leases(ctx)
		if err != nil {
			return false
		}
		for _, l := range ls {
			if l.PreparationID == c.lease && l.State != api.StateFailed {
				return false
			}
		}
		return true
	})
	return what, err
}

var errNoInstance = errors.New("no instance was running")

// processesLeft lists the processes running bin (by executable or first
// argument), by pid.
func processesLeft(bin string) []int {
	want, _ := filepath.Abs(bin)
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		exe = strings.TrimSuffix(exe, " (deleted)")
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		arg0, _, _ := strings.Cut(string(cmd), "\x00")
		if exe == want || arg0 == want {
			out = append(out, pid)
		}
	}
	return out
}

// cgroupsLeft lists the agents' cgroup parents still present (v2
// /sys/fs/cgroup/forewarm-<host>, v1 /sys/fs/cgroup/<controller>/forewarm/<host>)
// and the instance folders (fw-inst-*) left in their data folders.
func cgroupsLeft(agents []string, dataDir func(string) string) []string {
	var out []string
	for _, id := range agents {
		for _, p := range []string{"/sys/fs/cgroup/forewarm-" + id, "/sys/fs/cgroup/memory/forewarm/" + id, "/sys/fs/cgroup/cpu/forewarm/" + id} {
			if _, err := os.Stat(p); err == nil {
				out = append(out, p)
			}
		}
		m, _ := filepath.Glob(filepath.Join(dataDir(id), "fw-inst-*"))
		out = append(out, m...)
	}
	return out
}

// filesIn counts the entries of dir (0 when it is gone).
func filesIn(dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}

// gatewayEnv is what the gateway mode's replay and checks need from the
// set-up run shares with the workflows mode.
type gatewayEnv struct {
	s        settings
	st       *store.Store
	tc       client.Client
	px       *faults.Proxy
	procs    *processes
	agents   []string
	agentURL map[string]string
	agentDir func(string) string
	root     string
	apps     []string
	late     string // the idle application with a loop whose requests come just before each gateway kill
	loops    []string
	shapes   *shapes
	r        *mrand.Rand
	plan     faults.Plan
	url      string // the gateway's
	spool    string
	trivial  string
	logs     string
	began    time.Time
	queues   []string
}

func (e *gatewayEnv) run(ctx context.Context) (*Result, error) {
	if err := waitFor("the gateway ready", time.Minute, func() bool { return httpOK(e.url + "/_forewarm/readyz") }); err != nil {
		return nil, err
	}
	future := e.shapes.trace(e.r, time.Now().UTC().Truncate(bin).Add(5*time.Second), int(e.s.Duration/bin))
	h := newHTTPTraffic(e.url, e.s.Seed)
	ir := mrand.New(mrand.NewPCG(e.s.Seed, 2))
	var unnoticed []string
	killInst := func() bool {
		what, err := killInstance(ir, e.agents, e.agentURL, e.root)
		if what != "" {
			logf("SIGKILL %s", what)
		}
		if err != nil {
			if !errors.Is(err, errNoInstance) {
				unnoticed = append(unnoticed, err.Error())
			}
			logf("kill-instance: %v", err)
			return false
		}
		logf("its agent ended the lease")
		return true
	}
	startAt := future.Start
	faultsDone := make(chan killCounts)
	spooled := &spooledBins{heard: map[time.Time]time.Time{}}
	killGateway := func(kill func() bool) bool { return e.killGateway(h, kill, spooled) }
	go func() { faultsDone <- e.procs.inject(e.plan, startAt, e.px, killInst, killGateway) }()
	sum, err := replay.Run(ctx, future, replay.Options{Speed: 1, InFlight: 64, StartAt: startAt,
		OnProgress: func(p replay.Progress) {
			if p.BinsDone%30 == 0 {
				logf("replay %d/%d s: %d requests sent, %d answered, %d cut, %d refused", p.BinsDone, p.BinsTotal,
					h.sent.Load(), h.answered.Load(), h.cut.Load(), h.refused.Load())
			}
		}}, h.send)
	kills := <-faultsDone
	spooled.wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	answered, cut := h.answered.Load(), h.cut.Load()
	res := &Result{Traffic: trafficGateway, RequestsSent: int(h.sent.Load()), Kills: kills.total(),
		WorkerKills: kills["kill-worker"], AgentKills: kills["kill-agent"], GatewayKills: ptr(kills["kill-gateway"]), InstanceKills: ptr(kills["kill-instance"]),
		RequestsAnswered: ptr(answered), RequestsOK: ptr(h.ok.Load()), RequestsCut: ptr(cut), RequestsRefused: ptr(h.refused.Load())}
	logf("replay over: %d requests sent (%d by the replay's count), %d answered (%d with 200), %d cut, %d refused",
		res.RequestsSent, sum.Sent, answered, h.ok.Load(), cut, h.refused.Load())

	var problems []error
	// The loops say themselves that they run in router mode and woke.
	routerLoops := 0
	for _, a := range e.loops {
		st, err := loopState(ctx, e.tc, a)
		switch {
		case err != nil:
			problems = append(problems, fmt.Errorf("state of the loop of %s: %w", a, err))
		case st.Router && st.Stats.Wakes > 0:
			routerLoops++
		}
	}
	res.RouterLoops = &routerLoops
	for _, a := range e.loops {
		if err := stopLoop(ctx, e.tc, a); err != nil {
			problems = append(problems, err)
		}
	}
	// The gateway stops gracefully: its last bins written, its spool removed.
	if err := e.procs.stop("gateway", time.Minute); err != nil {
		problems = append(problems, fmt.Errorf("gateway stop: %w", err))
	}
	res.SpoolFilesLeft = ptr(filesIn(e.spool))
	if b, err := os.ReadFile(filepath.Join(e.logs, "gateway.log")); err == nil {
		res.SpoolReplays = ptr(strings.Count(string(b), "spool: replaying a previous run"))
	}
	ttl := max(longestLease(bin), gatewayKeepTTL+10*time.Second)
	stoppedAt := time.Now()
	res.LeasesLeft = leasesLeft(e.agents, e.agentURL, e.root)
	for res.LeasesLeft > 0 && time.Since(stoppedAt) < ttl {
		time.Sleep(500 * time.Millisecond)
		res.LeasesLeft = leasesLeft(e.agents, e.agentURL, e.root)
	}
	counted, busy, err := countArrivals(ctx, e.st, e.apps, startAt.Add(-bin), time.Now().Add(2*bin))
	if err != nil {
		return res, err
	}
	res.RequestsCounted = &counted
	cold, late, lost, err := lostWakes(ctx, e.tc, e.loops, busy, spooled.heard)
	if err != nil {
		return res, err
	}
	res.ColdArrivalBins, res.WakesLost, res.LateArrivalBins = &cold, ptr(len(lost)), &late
	// Every process ends (agents stop their instances); then none of the
	// sample's processes, cgroups or instance folders may be left.
	e.procs.stopAll()
	time.Sleep(2 * time.Second)
	left := processesLeft(e.trivial)
	cgs := cgroupsLeft(e.agents, e.agentDir)
	res.ProcessesLeft, res.CgroupsLeft = ptr(len(left)), ptr(len(cgs))
	if res.LoopsTerminated, err = countTerminated(ctx, e.tc, e.queues...); err != nil {
		return res, err
	}

	switch {
	case counted < answered:
		problems = append(problems, fmt.Errorf("%d requests answered but only %d counted in the arrivals: counts lost", answered, counted))
	case counted > answered+cut:
		problems = append(problems, fmt.Errorf("%d requests counted, more than the %d answered and %d cut: counted twice", counted, answered, cut))
	}
	if n := h.nf.Load(); n > 0 {
		problems = append(problems, fmt.Errorf("%d requests answered unknown_app (404)", n))
	}
	if replays := deref(res.SpoolReplays); replays < kills["kill-gateway"] {
		problems = append(problems, fmt.Errorf("%d gateway kills but %d spool replays in gateway.log", kills["kill-gateway"], replays))
	}
	if *res.SpoolFilesLeft > 0 {
		problems = append(problems, fmt.Errorf("%d files left in the spool %s after the gateway's graceful stop", *res.SpoolFilesLeft, e.spool))
	}
	if len(unnoticed) > 0 {
		problems = append(problems, fmt.Errorf("a killed instance's lease was not ended: %s", unnoticed[0]))
	}
	if len(left) > 0 {
		problems = append(problems, fmt.Errorf("%d processes of %s left running: pids %v", len(left), e.trivial, left))
	}
	if len(cgs) > 0 {
		problems = append(problems, fmt.Errorf("%d cgroups or instance folders left: %v", len(cgs), cgs))
	}
	if res.LeasesLeft > 0 {
		problems = append(problems, fmt.Errorf("%d leases left on the agents %v after the loops stopped", res.LeasesLeft, ttl))
	}
	if res.LoopsTerminated > 0 {
		problems = append(problems, fmt.Errorf("%d workflows of the run terminated or timed out by the server", res.LoopsTerminated))
	}
	if answered == 0 {
		problems = append(problems, errors.New("no request was answered"))
	}
	if routerLoops != len(e.loops) {
		problems = append(problems, fmt.Errorf("%d loops started, %d of them ran in router mode and woke", len(e.loops), routerLoops))
	}
	if len(lost) > 0 {
		problems = append(problems, fmt.Errorf("%d of %d cold arrivals did not wake their loop within a bin of their bin becoming final, e.g. %s", len(lost), cold, lost[0]))
	}
	if kills["kill-gateway"] > 0 && late == 0 {
		problems = append(problems, fmt.Errorf("%d gateway kills but no cold arrival bin written late by the restarted gateway's spool: the late path was not exercised (%d bins seen written late)", kills["kill-gateway"], len(spooled.heard)))
	}
	logf("done in %v", time.Since(e.began).Round(time.Second))
	return res, errors.Join(problems...)
}

// killGateway SIGKILLs the gateway (with kill) early in a bin, just after
// a request of the late application reached it: the gateway spools each
// request before forwarding it and writes a bin's batch only once the bin
// has ended, so that bin's counts reach the store only when the restarted
// gateway replays its spool, after the workers' mirrors froze the bin.
// The late application has a loop and no other requests, so its loop
// holds nothing then (the first time at least): only the mirror's late
// read can wake it. The store is watched for the bins the dead run left
// (spooledBins.watch).
func (e *gatewayEnv) killGateway(h *httpTraffic, kill func() bool, spooled *spooledBins) bool {
	b := time.Now().Truncate(bin).Add(bin)
	time.Sleep(time.Until(b.Add(bin / 20)))
	spooled.wg.Go(func() {
		if err := h.send(context.Background(), replay.Request{App: e.late, Bin: int(b.Unix()), Seq: -1}); err != nil {
			logf("the request of %s sent before the gateway's kill: %v", e.late, err)
		}
	})
	time.Sleep(bin * 3 / 10) // well within its bin
	if !kill() {
		return false
	}
	spooled.watch(e.st, e.apps, time.Now())
	return true
}

// spooledBins are the bins a killed gateway's spool wrote when the gateway
// started again, and when the soak first saw them in the store.
type spooledBins struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	heard map[time.Time]time.Time // bin start → first seen in the store with the dead run's counts
}

// watch reads the arrivals of the two bins a gateway killed at killed may
// have left unwritten (the one open, and the one before if its batch was
// not written yet) every 100 ms, from before the gateway restarts until 2
// s after their counts first grew (the replay writes one batch after the
// other) or 40 s have passed; a bin whose count grew was written late,
// and is dated by the first read that saw it grow.
func (s *spooledBins) watch(st *store.Store, apps []string, killed time.Time) {
	from := killed.Truncate(bin).Add(-bin)
	sums := func() (map[time.Time]uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		busy, err := st.BusyBins(ctx, from, from.Add(2*bin), bin)
		if err != nil {
			return nil, err
		}
		out := map[time.Time]uint64{}
		for _, a := range apps {
			for k, t := range busy[a].Starts {
				out[time.Unix(t, 0).UTC()] += busy[a].Counts[k]
			}
		}
		return out, nil
	}
	s.wg.Go(func() {
		time.Sleep(500 * time.Millisecond) // what the dead run had on its way landed
		base, err := sums()
		if err != nil {
			logf("spooled bins after the gateway's kill: %v", err)
			return
		}
		var first time.Time
		until := killed.Add(40 * time.Second)
		for time.Now().Before(until) {
			time.Sleep(100 * time.Millisecond)
			now, err := sums()
			if err != nil {
				continue
			}
			at := time.Now()
			for b, n := range now {
				if n > base[b] {
					s.mu.Lock()
					if _, ok := s.heard[b]; !ok {
						s.heard[b] = at
					}
					s.mu.Unlock()
					logf("the restarted gateway's spool wrote the bin of %s (%d requests more) by %s, %.1f s after it ended",
						b.Format("15:04:05"), n-base[b], at.Format("15:04:05.000"), at.Sub(b.Add(bin)).Seconds())
					base[b] = n
				}
			}
			if first.IsZero() && len(s.heardSince(from)) > 0 {
				first, until = at, at.Add(2*time.Second)
			}
		}
		if first.IsZero() {
			logf("no count of the bins the killed gateway left reached the store within 40 s of its kill")
		}
	})
}

// heardSince lists the bins from from on seen written late.
func (s *spooledBins) heardSince(from time.Time) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for b := range s.heard {
		if !b.Before(from) {
			out = append(out, b)
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func httpOK(url string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	r, err := c.Get(url)
	if err != nil {
		return false
	}
	r.Body.Close()
	return r.StatusCode == http.StatusOK
}
