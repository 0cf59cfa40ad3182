#!/usr/bin/env bash
# with-stack.sh CMD...: brings the stack (or $STACK_SERVICES) up, runs CMD with the connection
# variables set, then stops the services this run started (unless KEEP=1)
# and exits with CMD's status. `make test` and `make bench` use it.
# The services it started are stopped on every way out: CMD's end, up.sh
# failing half-way (the services started before the failure), SIGINT
# (from a terminal CMD gets it too), SIGTERM or SIGHUP (passed on to CMD as
# SIGTERM). CMD gets 30 s to end, then SIGTERM, then SIGKILL.
set -uo pipefail
here=$(dirname "$0")
source "$here/env.sh"

started_list=$(mktemp)
cmd_pid=

# cmd_ends SECONDS: true when CMD ends within SECONDS.
cmd_ends() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do kill -0 "$cmd_pid" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

# finish: the EXIT trap. Waits for CMD if it still runs (a signal came),
# then stops what this run started.
finish() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$cmd_pid" ]; then
    cmd_ends 30 || {
      log "$1 did not end 30s after the signal; sending it SIGTERM"
      kill -TERM "$cmd_pid" 2>/dev/null
      cmd_ends 5 || kill -KILL "$cmd_pid" 2>/dev/null
    }
    wait "$cmd_pid" 2>/dev/null
  fi
  if [ -s "$started_list" ]; then
    if [ "${KEEP:-0}" = 1 ]; then
      log "KEEP=1: leaving the stack running (make down stops it)"
    else
      "$here/down.sh" $(sort -u "$started_list")
    fi
  fi
  rm -f "$started_list"
  exit "$rc"
}
trap 'finish "${1:-}"' EXIT
# SIGINT from a terminal reaches CMD too (same process group): not sent again.
trap 'exit 130' INT
trap '[ -z "$cmd_pid" ] || kill -TERM "$cmd_pid" 2>/dev/null; exit 143' TERM
trap '[ -z "$cmd_pid" ] || kill -TERM "$cmd_pid" 2>/dev/null; exit 129' HUP

# STACK_SERVICES names up.sh's services (default: ClickHouse and the dev server).
FOREWARM_STARTED_LIST=$started_list "$here/up.sh" ${STACK_SERVICES:-} || exit 1

export CLICKHOUSE_ADDR=${CLICKHOUSE_ADDR:-127.0.0.1:$CLICKHOUSE_TCP_PORT}
export TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS:-127.0.0.1:$TEMPORAL_PORT}
export TEMPORAL_UI_ADDRESS=${TEMPORAL_UI_ADDRESS:-127.0.0.1:$TEMPORAL_UI_PORT}
export ONNXRUNTIME_LIB=${ONNXRUNTIME_LIB:-$ORT_LIB}
export PATH=$TOOLS/bin:$PATH

cd "$ROOT"
started_at=$SECONDS
# In the background so that a signal is handled at once; with its stdin,
# and SIGINT and SIGQUIT not ignored (as a shell does for a background
# command): a terminal's Ctrl-C stops it as when it ran in the foreground.
env --default-signal=INT,QUIT "$@" <&0 &
cmd_pid=$!
wait "$cmd_pid"
rc=$?
cmd_pid=
log "$1 finished in $((SECONDS - started_at))s with exit status $rc"
exit $rc
