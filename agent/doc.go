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
// sizes is a conflict; an ID whose lease already ended (released, expired,
// used) is refused as gone for an hour, so a late retry never allocates a
// ghost lease. A lease really holds its resources:
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
// that names the resource, the need and what is free; memory is also
// refused when the kernel's MemAvailable (minus 256 MB headroom) is
// smaller, whatever the configured capacity says. Allocation happens
// outside the agent's lock, so slow preparations do not block other calls.
//
// Lifecycle: preparing → ready → (claimed → used) | released | expired.
// The TTL runs from the moment the lease is ready; a reaper (every second)
// releases expired leases, and a claim or shadow that finds a lease past
// its TTL reaps it on the spot. Release is explicit too and idempotent.
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
// # Serving
//
// A request naming a ready lease of the same application claims it: the
// state changes under the agent's lock, so of concurrent claims exactly
// one wins (the others get already_claimed or gone). The prepared memory
// and file are handed over as they are (warm: set-up is the claim, a few
// microseconds). Without a lease the agent allocates on the spot (cold:
// mmap, touch, fallocate). Then the request's work runs on those resources:
// write every page, read and write a file sample with the read ratio, and
// WorkMS of CPU work (or a sleep with Config.SleepWork). The answer splits
// set-up from work and says whether it was warm; the resources are freed
// right after answering. A claim of another application's lease is always
// refused (wrong_app); with FallbackCold a lease that is gone, claimed or
// too small is served cold instead, with the reason in the answer.
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
// deltas, memory total and available from /proc/meminfo, memory pressure
// from /proc/pressure/memory (PSI "some" avg10 as a fraction; marked
// unavailable where the kernel has no PSI), and I/O latency from its own
// probe (64 KiB write, fsync and read back in the data folder). Metrics()
// adds the reservations and lease counts. They are served as JSON
// (/v1/metrics) and in the Prometheus text format (/metrics, through
// client_golang: gauges from the snapshot at scrape time, histograms of
// prepare, shadow and serve latencies, Go and process collectors).
//
// # Discovery
//
// Hosts register themselves; the engine never needs a restart to use a
// new one. Report pushes to a Reporter: it registers the host (ID, URL,
// capacity, speed, labels) at start and again at least once a minute, and
// sends a metrics snapshot every interval. hostagent implements Reporter
// with the ClickHouse store (store.RegisterHost, store.RecordHostMetrics)
// when --advertise-url is given; the worker lists live hosts with
// store.Hosts(ctx, now-30s), where a host's metrics count as being seen.
// A registry that is down is retried every interval and never stops the
// agent from serving.
//
// # Security
//
// Every call but /healthz and /readyz needs "Authorization: Bearer
// <token>"; the token is compared in constant time (SHA-256 of both, then
// crypto/subtle), and a call without it is answered 401 before its body is
// read. TLS is served when hostagent is given a certificate and key.
// Bodies are limited to 64 KiB, must be one JSON object with no unknown
// fields, sizes must be finite, ≥ 0 and at most 1 TiB, ratios within 0..1,
// and every ID must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ so an ID used
// in a file name can never leave the data folder. A rejected call changes
// nothing.
//
// # Shutdown and restart
//
// Close (SIGTERM or SIGINT in hostagent) refuses new calls, waits for the
// ones in flight, and releases every lease. At start-up the agent removes
// the files a crashed run left in the data folder: only regular files
// named like its own (fw-lease-*.dat, fw-cold-*.dat, fw-probe-*.dat).
//
// # HTTP API
//
//	method  path                     body            answer
//	GET     /healthz                 -               200 {"status":"ok"} (no token)
//	GET     /readyz                  -               200, or 503 while shutting down (no token)
//	GET     /v1/info                 -               api.Info: ID, URL, capacity, speed, version
//	POST    /v1/leases               ReserveRequest  201 api.Lease (new) or 200 (existing)
//	GET     /v1/leases               -               []api.Lease, live leases
//	GET     /v1/leases/{id}          -               api.Lease with resident and allocated MB
//	DELETE  /v1/leases/{id}          -               api.ReleaseResult (200 also if it had ended)
//	POST    /v1/leases/{id}/shadow   ShadowRequest   api.ShadowResult
//	POST    /v1/serve                ServeRequest    api.ServeResult
//	GET     /v1/metrics              -               api.HostMetrics (JSON)
//	GET     /metrics                 -               Prometheus text format
//
// Errors are {"code","message"} with the status of the code: 400
// bad_request, 401 unauthorized, 403 wrong_app, 404 not_found, 409
// conflict / already_claimed / lease_too_small / over_capacity, 410 gone,
// 413 too_large, 500 internal, 503 shutting_down.
package agent
