#!/usr/bin/env bash
# Starts the local stack (ClickHouse, Temporal dev server with the Web UI),
# installing what is missing first. Idempotent: a service already started
# by us and answering is left alone, and nothing is printed for it.
set -euo pipefail
here=$(dirname "$0")
source "$here/env.sh"

# Services to start: the arguments, or both.
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(clickhouse temporal)
for s in "${services[@]}"; do
  case $s in clickhouse|temporal) ;; *) die "up.sh: unknown service $s (known: clickhouse temporal)" ;; esac
done
"$here/install.sh" onnxruntime "${services[@]}"
mkdir -p "$STATE/logs"

# running PIDFILE: true when the pid in PIDFILE is alive.
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# started NAME: notes a service this run started, for callers that stop
# only what they started (make test): FOREWARM_STARTED_LIST names the file.
started() { [ -n "${FOREWARM_STARTED_LIST:-}" ] && echo "$1" >>"$FOREWARM_STARTED_LIST"; return 0; }

# fail NAME LOG REASON: one line of reason, then the log's tail, exit 1.
fail() {
  printf 'forewarm: %s did not start: %s\n' "$1" "$3" >&2
  if [ -s "$2" ]; then printf -- '--- last lines of %s ---\n' "$2" >&2; tail -n 15 "$2" >&2; fi
  exit 1
}

# wait_until NAME PIDFILE LOG SECONDS CMD...: polls CMD until it succeeds.
wait_until() {
  local name=$1 pidfile=$2 logf=$3 secs=$4; shift 4
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    running "$pidfile" || { rm -f "$pidfile"; fail "$name" "$logf" "the process exited"; }
    [ $SECONDS -lt $deadline ] || fail "$name" "$logf" "no answer within ${secs}s"
    sleep 0.3
  done
}

start_clickhouse() {
  local dir=$STATE/clickhouse pidfile=$STATE/clickhouse.pid logf=$STATE/logs/clickhouse.err.log
  local ping=(clickhouse-client --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" --query 'SELECT 1')
  if running "$pidfile" && "${ping[@]}" >/dev/null 2>&1; then return; fi
  for p in "$CLICKHOUSE_TCP_PORT" "$CLICKHOUSE_HTTP_PORT"; do
    port_free "$p" || fail ClickHouse "$logf" "port $p on 127.0.0.1 is already taken by another process (set CLICKHOUSE_TCP_PORT / CLICKHOUSE_HTTP_PORT)"
  done
  mkdir -p "$dir/data/" "$dir/tmp/" "$dir/user_files/" "$dir/format_schemas/"
  sed -e "s|@DIR@|$dir|g" -e "s|@LOGS@|$STATE/logs|g" \
      -e "s|@TCP_PORT@|$CLICKHOUSE_TCP_PORT|g" -e "s|@HTTP_PORT@|$CLICKHOUSE_HTTP_PORT|g" \
      "$ROOT/deploy/clickhouse/config.xml" >"$dir/config.xml"
  cp "$ROOT/deploy/clickhouse/users.xml" "$dir/users.xml"
  : >"$logf"
  log "starting ClickHouse on 127.0.0.1:$CLICKHOUSE_TCP_PORT"
  # Started directly (no subshell) so the pid file holds the server itself.
  nohup clickhouse-server --config-file="$dir/config.xml" --pidfile="$pidfile.server" \
      >>"$STATE/logs/clickhouse.stdout.log" 2>>"$logf" </dev/null &
  echo $! >"$pidfile"
  started clickhouse
  wait_until ClickHouse "$pidfile" "$logf" 60 "${ping[@]}"
}

start_temporal() {
  local pidfile=$STATE/temporal.pid logf=$STATE/logs/temporal.log
  local health=("$TEMPORAL_BIN" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT")
  if running "$pidfile" && "${health[@]}" >/dev/null 2>&1; then return; fi
  for p in "$TEMPORAL_PORT" "$TEMPORAL_UI_PORT"; do
    port_free "$p" || fail Temporal "$logf" "port $p on 127.0.0.1 is already taken by another process (set TEMPORAL_PORT / TEMPORAL_UI_PORT)"
  done
  mkdir -p "$STATE/temporal"
  local sa=()
  for a in "${SEARCH_ATTRIBUTES[@]}"; do sa+=(--search-attribute "$a"); done
  : >"$logf"
  log "starting the Temporal dev server on 127.0.0.1:$TEMPORAL_PORT (Web UI http://127.0.0.1:$TEMPORAL_UI_PORT)"
  # WAL and one task-queue partition: several times the throughput of the
  # defaults on two cores (measured: 5 -> 9 serve requests/s; loops keep up).
  nohup "$TEMPORAL_BIN" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
      --db-filename "$STATE/temporal/temporal.db" --log-level warn "${sa[@]}" \
      --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
      --dynamic-config-value matching.numTaskqueueReadPartitions=1 \
      --dynamic-config-value matching.numTaskqueueWritePartitions=1 \
      >>"$logf" 2>&1 </dev/null &
  echo $! >"$pidfile"
  started temporal
  wait_until Temporal "$pidfile" "$logf" 90 "${health[@]}"
  wait_until "Temporal Web UI" "$pidfile" "$logf" 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$TEMPORAL_UI_PORT"
}

for s in "${services[@]}"; do "start_$s"; done
