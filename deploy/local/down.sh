#!/usr/bin/env bash
# Stops what up.sh (and the demo) started, found through their pid files
# under the state folder; never touches processes it did not start.
set -uo pipefail
source "$(dirname "$0")/env.sh"

# stop PIDFILE [SIGNAL]: SIGNAL (default TERM), then KILL after 10 s.
stop() {
  local pidfile=$1 sig=${2:-TERM} name; name=$(basename "$pidfile" .pid)
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -"$sig" "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "$name did not stop in 10s; killing it"; kill -KILL "$pid" 2>/dev/null; }
  fi
  rm -f "$pidfile"
}

# Usage: down.sh [SERVICE...]  (default: the demo's programs and every service)
services=("$@")
if [ ${#services[@]} -eq 0 ]; then
  # Programs first (worker, host agents), then the services they use.
  shopt -s nullglob
  for f in "$STATE"/run/*.pid; do stop "$f"; done
  services=(temporal-server temporal replica1 replica2 clickhouse zookeeper postgresql)
fi
for s in "${services[@]}"; do
  case $s in
    temporal|temporal-server|zookeeper) stop "$STATE/$s.pid" ;;
    postgresql) stop "$STATE/$s.pid" INT ;;  # fast shutdown: TERM would wait for clients
    clickhouse|replica1|replica2) stop "$STATE/$s.pid"; rm -f "$STATE/$s.pid.server" ;;
    replicas) stop "$STATE/replica1.pid"; stop "$STATE/replica2.pid"; rm -f "$STATE"/replica?.pid.server ;;
    *) die "down.sh: unknown service $s (known: temporal clickhouse temporal-server zookeeper replica1 replica2 replicas postgresql)" ;;
  esac
done
exit 0
