#!/usr/bin/env bash
# with-stack.sh CMD...: brings the stack (or $STACK_SERVICES) up, runs CMD with the connection
# variables set, then stops the services this run started (unless KEEP=1)
# and exits with CMD's status. `make test` and `make bench` use it.
set -uo pipefail
here=$(dirname "$0")
source "$here/env.sh"

started_list=$(mktemp)
trap 'rm -f "$started_list"' EXIT
# STACK_SERVICES names up.sh's services (default: ClickHouse and the dev server).
FOREWARM_STARTED_LIST=$started_list "$here/up.sh" ${STACK_SERVICES:-} || exit 1

export CLICKHOUSE_ADDR=${CLICKHOUSE_ADDR:-127.0.0.1:$CLICKHOUSE_TCP_PORT}
export TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS:-127.0.0.1:$TEMPORAL_PORT}
export TEMPORAL_UI_ADDRESS=${TEMPORAL_UI_ADDRESS:-127.0.0.1:$TEMPORAL_UI_PORT}
export ONNXRUNTIME_LIB=${ONNXRUNTIME_LIB:-$ORT_LIB}
export PATH=$TOOLS/bin:$PATH

cd "$ROOT"
started_at=$SECONDS
"$@"
rc=$?
log "$1 finished in $((SECONDS - started_at))s with exit status $rc"

if [ "${KEEP:-0}" = 1 ]; then
  log "KEEP=1: leaving the stack running (make down stops it)"
elif [ -s "$started_list" ]; then
  "$here/down.sh" $(sort -u "$started_list")
fi
exit $rc
