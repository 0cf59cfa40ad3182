#!/usr/bin/env bash
# `make demo`: the whole product on a real workload, on this machine.
#  1. the stack (ClickHouse, Temporal + Web UI), three host agents of
#     different sizes that run the sample applications (samples/) as real
#     processes, the worker, and the gateway;
#  2. the Azure Functions 2019 sample loaded as history, models trained
#     through the training workflow;
#  3. prediction loops (router mode: they read the gateway's arrivals) for a
#     few dozen applications of varied shapes, each mapped onto one of the
#     sample applications with its own memory size, and a later part of the
#     trace replayed live as real HTTP requests through the gateway;
#  4. a report read from ClickHouse (live against the simulator, and real
#     latency warm against cold), and how to look and steer;
#  5. everything left running until `make down`.
# DEMO_TRAFFIC=workflows serves each request through its own serve-request
# workflow on memory-reservation instances instead (the earlier demo).
set -euo pipefail
here=$(dirname "$0")
source "$here/env.sh"

DEMO_APPS=${DEMO_APPS:-36}
DEMO_TRACE=${DEMO_TRACE:-$ROOT/testdata/azure2019-sample}
DEMO_FROM=${DEMO_FROM:-960}   # trace minute the live replay starts at (16:00)
DEMO_TRAFFIC=${DEMO_TRAFFIC:-gateway}
# Trace minutes per wall minute. Through the gateway a cold start is a real
# process start: the Python sample takes over a second alone, and when the
# trace's timers fire together (on the hour, every five minutes) a dozen
# starts share two cores and the last is ready 8-9 s after the first began.
# A bin must be several times that, as a minute is on a real platform: bins
# of 12 s, so a preparation started ahead of its bin (up to a bin ahead) is
# ready when it begins; six minutes replay half an hour of the trace.
if [ "$DEMO_TRAFFIC" = gateway ]; then
  DEMO_SPEED=${DEMO_SPEED:-5}; DEMO_MINUTES=${DEMO_MINUTES:-6}
else
  DEMO_SPEED=${DEMO_SPEED:-60}; DEMO_MINUTES=${DEMO_MINUTES:-3}
fi
DEMO_BIN_S=$((60 / DEMO_SPEED))
DEMO_BIN=${DEMO_BIN_S}s
# Trace minutes replayed before the reported window: the fleet's instances
# start (real processes, on two cores) and the loops settle, as on a
# platform that was already running.
if [ "$DEMO_TRAFFIC" = gateway ]; then DEMO_WARMUP=${DEMO_WARMUP:-5}; else DEMO_WARMUP=${DEMO_WARMUP:-0}; fi
# The threshold `starter eval` chose on the Azure sample's select range
# (docs/results.md): a 170 MB app is held through a bin when P >= 0.022.
DEMO_THRESHOLD=${DEMO_THRESHOLD:-0.022}
DEMO_MAX_PER_BIN=${DEMO_MAX_PER_BIN:-0}  # no cap: every request of the replayed apps is served
# The demo serves each request through its own serve-request workflow, a
# few a second on two cores: the apps are chosen to stay within this many
# requests per second on average.
DEMO_MAX_RATE=${DEMO_MAX_RATE:-6}
DEMO_ALLOC_SCALE=${DEMO_ALLOC_SCALE:-0.25}  # hosts really allocate this share of each MB: three hosts on one machine

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
began=$SECONDS

step "1/5 stack: ClickHouse, Temporal and its Web UI"
"$here/up.sh"
export CLICKHOUSE_ADDR=${CLICKHOUSE_ADDR:-127.0.0.1:$CLICKHOUSE_TCP_PORT}
export TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS:-127.0.0.1:$TEMPORAL_PORT}
export ONNXRUNTIME_LIB=${ONNXRUNTIME_LIB:-$ORT_LIB}
export PATH=$TOOLS/bin:$PATH
log "building worker, starter, hostagent, gateway and the sample applications"
(cd "$ROOT" && go build -o bin/ ./worker ./starter ./hostagent ./gateway/cmd/gateway && samples/build.sh >/dev/null)
starter=$ROOT/bin/starter
mkdir -p "$STATE/run" "$STATE/logs" "$STATE/agents"
# The schema is its own step: agents and the worker only check its version.
"$starter" migrate

# start_bg NAME CMD...: runs CMD in the background with a pid file that
# down.sh knows. An already running NAME is left alone when its binary and
# arguments are the same; otherwise (a rebuilt worker, say) it is stopped
# and started again, so the demo always runs the code just built.
start_bg() {
  local name=$1; shift
  local pidfile=$STATE/run/$name.pid sigfile=$STATE/run/$name.sig sig
  sig=$( { sha256sum "$1" | cut -d' ' -f1; printf '%s\n' "$@"; } | sha256sum | cut -d' ' -f1)
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    if [ "$(cat "$sigfile" 2>/dev/null)" = "$sig" ]; then return; fi
    local pid; pid=$(cat "$pidfile")
    log "restarting $name (its binary or arguments changed)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  nohup "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "$sig" >"$sigfile"
}

# The worker holds the fleet's root secret; each agent only its own token,
# derived from it (hostagent --print-token), so one host cannot call another.
root_secret=$STATE/agent-root-secret
[ -s "$root_secret" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$root_secret")
# name port memory-MB disk-MB cpu-milli speed setup-ms-per-MB (the extra
# set-up per MB stands for what a cold start costs beyond allocation: an
# image pull, a runtime start; a prepared lease has paid it already)
agents=(
  "host-small 7301 16384 16384 32000 0.5 0.5"
  "host-medium 7302 24576 24576 48000 0.8 0.3"
  "host-large 7303 32768 32768 64000 1.0 0.2"
)
trace_args=(--format azure2019 --file "$DEMO_TRACE/1350_inv.csv" --memory "$DEMO_TRACE/1350_mem.csv" --durations "$DEMO_TRACE/1350_run.csv")
replay_args=("${trace_args[@]}" --from "$DEMO_FROM" --duration "${DEMO_MINUTES}m" --speed "$DEMO_SPEED"
  --max-per-bin "$DEMO_MAX_PER_BIN" --max-work 100ms)
mapfile -t apps < <("$starter" replay "${replay_args[@]}" --apps "$DEMO_APPS" --max-rate "$DEMO_MAX_RATE" --list-apps)
app_flags=(); for a in "${apps[@]}"; do app_flags+=(--app "$a"); done
agent_mode=(--sleep-work --alloc-scale "$DEMO_ALLOC_SCALE")
if [ "$DEMO_TRAFFIC" = gateway ]; then
  # Each replayed application runs one of the samples (the Go service that
  # loads a model, the Python one that imports heavy modules), with its own
  # memory size from the trace: the agents' spec folder.
  rm -rf "$STATE/specs"
  "$starter" replay "${replay_args[@]}" "${app_flags[@]}" --write-specs "$STATE/specs" \
    --spec-template "$ROOT/samples/specs/sample-go.json" --spec-template "$ROOT/samples/specs/sample-py.json"
  # Three agents share this machine's two cores: each starts one instance
  # at a time, and a request waits up to a second for a busy instance
  # rather than start another (seconds, for the Python sample).
  # (The label carries the specs' digest: agents started on other specs are
  # restarted, since start_bg keeps a running program whose arguments match.)
  agent_mode=(--spec-dir "$STATE/specs" --max-starting 1 --queue-wait 1s
    --labels "specs=$(cat "$STATE"/specs/*.json | sha256sum | cut -c1-16)")
fi
for a in "${agents[@]}"; do
  read -r name port mem disk cpu speed setup <<<"$a"
  token=$STATE/agents/$name.token
  (umask 077; "$ROOT/bin/hostagent" --print-token --host-id "$name" --root-secret-file "$root_secret" >"$token")
  start_bg "$name" "$ROOT/bin/hostagent" --listen "127.0.0.1:$port" --host-id "$name" \
    --memory-mb "$mem" --disk-mb "$disk" --cpu-milli "$cpu" --speed "$speed" --setup-ms-per-mb "$setup" \
    "${agent_mode[@]}" --data-dir "$STATE/agents/$name" --token-file "$token" \
    --advertise-url "http://127.0.0.1:$port" --log-level warn
done
if [ "$DEMO_TRAFFIC" = gateway ]; then
  # Router mode: the gateway records the arrivals, the worker mirrors them.
  start_bg worker "$ROOT/bin/worker" --agent-root-secret-file "$root_secret" --arrivals-bin "$DEMO_BIN"
  # An instance the gateway starts is held ten bins (the fixed keep-alive
  # the policy falls back to) unless its loop keeps it longer.
  start_bg gateway "$ROOT/bin/gateway" --listen "127.0.0.1:$GATEWAY_PORT" --id demo-gateway --bin "$DEMO_BIN" \
    --keep-ttl "$((10 * DEMO_BIN_S))s" --notify-loops --agent-root-secret-file "$root_secret" --log-level warn \
    --spool "$STATE/gateway/spool"
else
  start_bg worker "$ROOT/bin/worker" --agent-root-secret-file "$root_secret"
fi
log "host agents: ${#agents[@]}; worker and gateway logs in $STATE/logs/"

step "2/5 history: the Azure Functions 2019 sample, then training through the workflow"
"$starter" history load "${trace_args[@]}"
# The trace's day starts 2019-07-15T00:00Z; train on what precedes the replay.
day=2019-07-15T00:00:00Z
split=$(date -u -d "$day + $DEMO_FROM minutes" +%Y-%m-%dT%H:%M:%SZ)
if [ "${DEMO_RETRAIN:-0}" = 1 ] || ! "$starter" model list --kind demand --json | grep -q '"champion"'; then
  "$starter" train --wait --from "$day" --to "$split" --bin 1m
else
  log "a champion demand model exists: reusing it (DEMO_RETRAIN=1 trains again through the workflow)"
fi
"$starter" model list --kind demand

step "3/5 prediction loops for ${#apps[@]} applications, live replay for $DEMO_MINUTES minutes"
# Loops left by an earlier demo run carry that run's clock: stop them first
# (they release their leases); "no such loop" is fine.
# (Wait for these jobs only: a bare `wait` would also wait for the agents
# and the worker this shell started.)
stops=()
for a in "${apps[@]}"; do
  timeout 60 "$starter" loop stop --app "$a" --wait --reason "demo restart" >/dev/null 2>&1 &
  stops+=($!)
done
wait "${stops[@]}" || true
# A loop that did not stop within the minute (say, one a newer worker can
# no longer replay) is terminated; the hosts' TTL frees what it held. The
# server runs a terminate-by-query as a batch job, later: the query names
# only loops started before now, so it cannot reach the loops started
# below, and the demo waits until none of those is left running.
leftover="WorkflowType='PredictionLoop' AND ExecutionStatus='Running' AND StartTime < '$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)'"
"$TEMPORAL_BIN" workflow terminate --address "127.0.0.1:$TEMPORAL_PORT" --yes --reason "demo restart" \
  --query "$leftover" >/dev/null 2>&1 || true
for _ in $(seq 1 60); do
  n=$("$TEMPORAL_BIN" workflow count --address "127.0.0.1:$TEMPORAL_PORT" --query "$leftover" 2>/dev/null | grep -o '[0-9]\+' | head -1)
  [ "${n:-0}" = 0 ] && break
  sleep 1
done
# The loops continue the stored history at $split, one trace minute per
# live bin, from a shared start time that the replay waits for too.
# (It begins a bin: a router's arrivals are counted in bins from the epoch.)
clock_start=$(date -u -d "@$(( ($(date +%s) + 20 + DEMO_BIN_S - 1) / DEMO_BIN_S * DEMO_BIN_S ))" +%Y-%m-%dT%H:%M:%SZ)
loop_mode=(); send_mode=()
if [ "$DEMO_TRAFFIC" = gateway ]; then
  loop_mode=(--router)
  send_mode=(--gateway "http://127.0.0.1:$GATEWAY_PORT")
fi
seed_end=$(date -u -d "$split - $DEMO_WARMUP minutes" +%Y-%m-%dT%H:%M:%SZ)
"$starter" loop start "${app_flags[@]}" "${loop_mode[@]}" --bin "$DEMO_BIN" --seed-end "$seed_end" --seed-bin 1m \
  --clock-start "$clock_start" --threshold "$DEMO_THRESHOLD" >/dev/null
log "${#apps[@]} loops started; replay begins at $clock_start"
"$starter" replay "${replay_args[@]}" "${app_flags[@]}" "${send_mode[@]}" --warmup-bins "$DEMO_WARMUP" \
  --start-at "$clock_start" --summary "$STATE/replay.json"

step "4/5 report (from ClickHouse), live against the simulator"
sleep 3 # the last requests' records and events reach ClickHouse
[ "$DEMO_TRAFFIC" = gateway ] || "$starter" report --since "$clock_start" --bin "$DEMO_BIN"
echo
"$starter" report --replay "$STATE/replay.json" --plot "$STATE/replay.png"

step "5/5 look and steer"
first=${apps[0]}
cat <<MSG
The stack stays up for inspection; \`make down\` stops everything.

  Web UI, all loops:   http://127.0.0.1:$TEMPORAL_UI_PORT/namespaces/default/workflows?query=ForewarmApp%20IS%20NOT%20NULL
  one loop:            http://127.0.0.1:$TEMPORAL_UI_PORT/namespaces/default/workflows/predict%2F$first
  overview:            bin/starter status
  a loop's state:      bin/starter loop status --app $first
  change a threshold:  bin/starter loop threshold --app $first 0.7
    or with Temporal:  .tools/bin/temporal workflow signal --workflow-id predict/$first --name threshold --input '{"Threshold":0.7}'

demo finished in $((SECONDS - began))s
MSG
