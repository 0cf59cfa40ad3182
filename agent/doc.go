// Package agent is the Forewarm host agent: the part of the product that
// runs on every resource host and makes a preparation real. The binary is
// hostagent/; the Go client the activities use is agent/client; the wire
// format both share is agent/api. Linux only (mmap, mincore, fallocate,
// /proc).
//
// # Leases
//
// A lease is keyed by a preparation ID the caller chooses. Reserving the
// same ID again with the same application and sizes returns the same lease
// (waiting for it if it is still being prepared); the same ID with other
// sizes is a conflict; an ID whose lease already ended (released or
// expired) is refused as gone, so a late retry never allocates a ghost
// lease. Releasing an ID the agent never knew also leaves such a
// tombstone: when a preparation is cancelled while its reserve is still in
// flight, the release may arrive first, and the reserve that follows is
// then refused instead of creating a lease nobody would release.
// Tombstones are kept for Config.TombstoneTTL (default api.MaxTTL, longer
// than any lease lives) and at most Config.MaxTombstones (oldest first).
// A lease really holds its resources:
//
//   - memory: an anonymous mmap outside the Go heap with every page
//     written once, so the kernel backs all of it (the lease reports what
//     mincore(2) says is resident); munmap on release makes the resident
//     set shrink at once rather than whenever the GC and scavenger decide;
//   - storage: a file fw-lease-<id>.dat in the data folder, pre-allocated
//     with fallocate(2) (zeros written where the file system lacks it); the
//     lease reports st_blocks, the space really held;
//   - CPU: millicores counted against the configured capacity.
//
// Admission control counts leases and cold requests in flight against the
// capacity (memory, disk, CPU) and refuses what does not fit with a reason
// that names the resource, the need and what is free. A cold request holds
// CPU like a lease's request while it runs: its cpu_milli, at least one
// core (all the host has, when it has less), so a burst of cold serves
// cannot take the cores promised to leases; memory is also
// refused when the kernel's MemAvailable (minus 256 MB headroom) is
// smaller, whatever the configured capacity says. Allocation happens
// outside the agent's lock, so slow preparations do not block other calls.
//
// Lifecycle: preparing → ready → released | expired. The TTL runs from the
// moment the lease is ready; Extend sets a new expiry (now + TTL) in place,
// without a new reservation or shadow. A reaper (every second) releases
// expired leases that no request runs on, and a request or shadow that
// finds a lease past its TTL reaps it on the spot. Release is explicit too
// and idempotent; requests running on a released lease finish first and
// its resources return after them. The TTL is the last resort against a
// caller that lost track of a lease: whatever happens to the engine, every
// lease ends by its TTL.
//
// # Shadow requests
//
// A shadow request proves a host ready: it writes every page of the
// lease's memory, asks the kernel how much is resident, and reads and
// writes a sample of the lease's file (8 MB by default, in 64 KiB chunks
// spread over the file, the share of reads given by the application's read
// ratio). It returns the timings. Shadows hold the lease's read lock, so a
// release waits for them instead of unmapping memory under them.
//
// # Serving: a lease is a warm instance
//
// A request naming a ready lease of the same application runs warm on the
// lease's memory and file (set-up is a few microseconds), and the lease
// stays ready for the next one: it serves every request of its application
// until it is released or expires. Concurrency rule: at most
// api.MaxConcurrent(cpu_milli) requests run on one lease at a time, one per
// whole core it reserves and at least one. A request that would exceed
// that, or that is larger than the lease (memory, disk or CPU, ignoring
// float noise), is refused with lease_busy or lease_too_small, or, with
// FallbackCold, served cold while the lease stays ready; each such
// fallback is counted on the lease and in the host metrics. A busy-lease
// fallback for which the host has no room (its cores promised) waits for
// its lease instead and runs warm; a cold request without a lease that
// does not fit is refused over_capacity, naming the resource. Without a
// lease the agent allocates on the spot (cold: mmap, touch, fallocate),
// runs the request and frees the resources after answering, unless the
// request asks to keep them: with KeepID and KeepTTLSeconds the cold
// instance, sized the larger of the request and Keep*, becomes a ready
// lease of the application once the request ends. Keeping is admitted
// like a reserve (capacity, a new ID); a keep that does not fit is not
// kept and ServeResult.KeepRefused says why, but the request is served.
//
// The request's work, warm or cold: write every page, read and write a
// file sample with the read ratio, and WorkMS of CPU work (or a sleep with
// Config.SleepWork). The answer splits set-up from work and says whether it
// was warm. A lease of another application is always refused (wrong_app).
//
// Serving is idempotent by request ID: a retry of a request that was
// served (or is still running) waits for and returns the first result,
// marked Replayed, and does not run again; a failed serve is forgotten so
// it can be retried. Results are remembered for Config.ServeMemory
// (default an hour) and at most Config.MaxServeMemory of them.
//
// Per lease the agent reports its use (api.LeaseUse): requests served,
// requests in flight and the limit, busy and idle memory-time in MB·s
// since it became ready (busy while at least one request runs on it), and
// the cold fallbacks it caused. It is in every lease view, in the release
// answer (the final figures) and per live lease in /v1/metrics
// (lease_use), and summed over all leases in the host metrics and in
// Prometheus (forewarm_agent_lease_*_byte_seconds_total,
// forewarm_agent_lease_requests_in_flight). Prometheus has no series per
// lease or application: they would come and go with every lease.
//
// # Process instances
//
// With Config.SpecDir (hostagent --spec-dir) the agent loads application
// specs (package appspec, one <app>.json each; a folder that does not load
// fails the start, naming file and field; hostagent re-reads it on SIGHUP
// and keeps the old set when the new one does not load). GET /v1/apps lists
// them. A reserve of an application with a spec gets a process instance
// instead of a memory reservation (applications without one are served as
// above, unchanged); a reserve naming a SpecVersion this host does not hold
// is refused unknown_spec and changes nothing. The lease is never smaller
// than the spec (memory_mb, cpu_milli, scratch_mb as disk: what the
// application needs), larger where the reserve asks for more, and
// admission counts it like any lease. Preparation (package instance), each phase timed in
// api.Instance:
//
//   - scratch: <data>/fw-inst-<id>/ (0711, the agent's: pid file, capped
//     log of the process's output) holding scratch/ ($FOREWARM_SCRATCH and
//     $HOME, the instance user's) with a file of the lease's disk size
//     pre-allocated like a lease file;
//   - cgroup (containerd/cgroups): /forewarm/<host>/<id> in the v1 memory
//     and cpu controllers, or /forewarm-<host>/<id> on v2, with the lease's
//     memory as its limit (no swap) and its CPU as a CFS quota. On v1 the
//     process is started traced, so it stops right after exec and is moved
//     into the cgroup before its first instruction (v2 starts it inside).
//     Where no cgroup can be made (not root, read-only) instances run
//     without limits, said once in the log, and Instance.Cgroup is empty;
//   - spawn: the spec's command in its own process group, killed with the
//     agent (Pdeathsig), as Config.InstanceUser (nobody) when the agent is
//     root, with the spec's environment, $PORT (a loopback port the agent
//     picked), $FOREWARM_APP, $FOREWARM_INSTANCE, a minimal PATH;
//   - readiness: GET of the spec's path until it answers 2xx, failing at
//     once when the process exits;
//   - shadow: the spec's request, which must answer its status within its
//     max_latency.
//
// Any failure leaves nothing (process, cgroup, folder) and refuses the
// reserve start_failed, naming the phase and the application, with the
// first and last lines of the process's output. A lease released while its
// instance starts stops the start. The lease's concurrency is the spec's;
// /shadow on it sends the spec's shadow request again. Lease views give the
// instance's real memory (its cgroup's usage and peak, else its process
// group's resident set).
//
// ANY /v1/instances/{id}/http/{path} forwards a request to the instance on
// loopback (bodies up to MaxInstanceBody, Authorization stripped, kept-alive
// connections) and answers with the instance's own answer plus
// api.HeaderHost, HeaderLease and HeaderInstanceMS. It takes a slot of the
// lease like a served request (in flight, served, busy time), waits up to
// Config.QueueWait for one when all are taken, else lease_busy. The agent's
// own refusals are api.ErrorBody without HeaderLease, with HeaderSent
// saying whether anything of the request reached the instance: not_found or
// gone, no_instance (a memory lease), not_ready, lease_busy, and
// instance_failed (502) when the instance did not answer.
//
// Release, expiry and Close stop an instance: SIGTERM to its group, SIGKILL
// after the spec's stop_grace, then whatever is left in its cgroup, the
// cgroup and the folder; the capacity returns after. A process that exits
// or is killed by itself (the kernel's OOM killer at its memory limit) ends
// its lease at once as failed: the tombstone keeps how ("exit status 2",
// "killed: memory limit 64 MB") for GET /v1/leases/{id} and the release
// answer, everything is freed, and it is logged and counted
// (forewarm_agent_instances_failed_total{reason}). At start, before serving, the agent kills and removes
// what a previous run of the same host ID left: every cgroup under its
// parent and every fw-inst-* folder, killing the process its pid file names
// only when it still carries that instance's marks ($FOREWARM_INSTANCE and
// $FOREWARM_SCRATCH) or sits in the agent's cgroup, and any process that
// carries them. Two agents on one machine need distinct host IDs.
//
// # Speed of a host
//
// Config.Speed in (0, 1] stretches every prepare, shadow and work phase to
// 1/Speed of its real duration, and Config.SetupPerMB adds latency per MB
// allocated: one machine can play a fast, a medium and a slow host in a
// demo while everything it does stays real.
//
// # Host metrics
//
// A sampler reads, every two seconds: CPU utilisation from /proc/stat
// deltas, memory total and available from /proc/meminfo (narrowed to the
// agent's cgroup when its memory limit is lower: total the limit,
// available the limit less the cgroup's working set), memory pressure
// from /proc/pressure/memory (PSI "some" avg10 as a fraction; marked
// unavailable where the kernel has no PSI), and I/O latency from its own
// probe (64 KiB write, fsync and read back in the data folder). Metrics()
// adds the reservations, lease counts, serving counters and each live
// lease's use. They are served as JSON
// (/v1/metrics) and in the Prometheus text format (/metrics, through
// client_golang: gauges from the snapshot at scrape time, histograms of
// prepare, shadow and serve latencies, Go and process collectors); the
// latter also without a token from MetricsHandler, a listener of its own
// that serves nothing else (for Prometheus, which cannot hold each host's
// token).
//
// # Discovery
//
// Hosts register themselves; the engine never needs a restart to use a
// new one. Report pushes to a Reporter: it registers the host (ID, URL,
// capacity, speed, labels) at start and again at least once a minute, and
// sends a metrics snapshot every interval. hostagent implements Reporter
// with the ClickHouse store (store.RegisterHost, store.RecordHostMetrics)
// when --advertise-url is given; the worker lists live hosts with
// store.Hosts(ctx, now-30s), where a host's metrics count as being seen;
// rows stamped more than store.MaxClockSkew ahead of the reader's clock are
// not read, so a forged registration from the future cannot pin a host's
// URL or keep a dead host seen.
// A registry that is down is retried every interval and never stops the
// agent from serving.
//
// # Security
//
// Every call but /healthz and /readyz needs "Authorization: Bearer
// <token>"; the token is compared in constant time (SHA-256 of both, then
// crypto/subtle), and a call without it is answered 401 before its body is
// read; such calls are logged at most once per
// Config.UnauthorizedLogEvery, the next line counting those skipped. Each
// host has its own token, api.DeriveToken(root secret, host ID), which only
// the worker can compute (see agent/client's Trust: CA verification, an
// allow-list of agent URLs, no plain HTTP off loopback, and a host's token
// only for a URL bound to its ID: {host} in the allow pattern, or a
// certificate that must name the host, TLSName). TLS is served when
// hostagent is given a certificate and key. Bodies are limited to 64 KiB,
// must be one JSON object with no unknown fields, sizes must be finite,
// ≥ 0 and at most 1 TiB, ratios within 0..1, and every ID must match
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ so an ID used in a file name can never
// leave the data folder. A rejected call changes nothing.
//
// The data folder (DefaultDataDir when hostagent is given none: under
// $XDG_STATE_HOME or ~/.local/state, never the shared temporary folder) is
// created 0700 and refused if it, or the folder a link at its path leads
// to, belongs to another user, or if group or others can write into it.
// Lease, cold and probe files are created exclusively (O_EXCL) and never
// through a symbolic link (O_NOFOLLOW); the I/O probe uses a fresh random
// name each time and removes its file. When process instances run as
// another user, the folder is made 0711 (that user may enter it to reach
// its scratch folder, not list or write it), and every folder above it must
// let others enter, else the agent refuses to start: the default under a
// root's home does not, so such a host gives --data-dir (e.g.
// /var/lib/forewarm-agent/<host>).
//
// # Shutdown and restart
//
// Close (SIGTERM or SIGINT in hostagent) refuses new calls, stops instances
// still starting, waits for the calls in flight, and releases every lease
// (instances stopped in parallel). At start-up the agent removes the files
// a crashed run left in the data folder: only regular files named like its
// own (fw-lease-*.dat, fw-cold-*.dat, fw-probe-*.dat), and its instances
// (see Process instances).
//
// # HTTP API
//
// The endpoints, bodies and error codes are package api's (see its
// documentation); hostagent --help lists them too.
package agent
