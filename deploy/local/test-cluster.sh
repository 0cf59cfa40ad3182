#!/usr/bin/env bash
# `make test-cluster`: the tests that need more than one machine's worth of
# services, on this machine.
#  1. the store's SQL on a modern ClickHouse (chDB, 26.x in-process);
#  2. the scripts with these services (internal/stackcheck, tag cluster):
#     PostgreSQL for a checkout under a private folder, and with-stack.sh
#     stopping what it started when a service fails to start, the command
#     fails or a signal comes;
#  3. the whole store suite on two ClickHouse replicas of one shard
#     (ZooKeeper), with a replica killed and caught up;
#  4. the worker's end-to-end test and the worker-loss test (three worker
#     processes, one SIGKILLed) on a Temporal server on PostgreSQL and the
#     replicated ClickHouse.
# Services this run starts are stopped at the end and on every failure or
# signal (with-stack.sh's trap; KEEP=1 leaves them).
set -uo pipefail
here=$(dirname "$0")
source "$here/env.sh"
"$here/install.sh" onnxruntime clickhouse temporal chdb zookeeper postgresql temporal-server || exit 1
cd "$ROOT"
began=$SECONDS
log "chDB (ClickHouse $CHDB_VERSION in-process): the store's SQL on a modern server"
CHDB_LIB_PATH=$CHDB_LIB go test -count=1 -tags chdb -run Modern ./store/ || exit 1

log "the scripts: PostgreSQL from a checkout under a private folder, services stopped on failure and on signal"
go test -count=1 -tags cluster -run '^(TestPostgreSQL|TestWithStack)' ./internal/stackcheck/ || exit 1

export CLICKHOUSE_ADDR=127.0.0.1:$REPLICA1_TCP_PORT,127.0.0.1:$REPLICA2_TCP_PORT
export CLICKHOUSE_CLUSTER=$CLICKHOUSE_CLUSTER_NAME
export TEMPORAL_ADDRESS=127.0.0.1:$TEMPORAL_SERVER_PORT
export FOREWARM_STATE=$STATE REPLICA1_TCP_PORT
STACK_SERVICES="replicas temporal-server" "$here/with-stack.sh" bash -c '
  set -e
  log() { printf "forewarm: %s\n" "$*" >&2; }
  log "the store suite on cluster $CLICKHOUSE_CLUSTER ($CLICKHOUSE_ADDR), replica loss and catch-up"
  go test -count=1 -timeout 20m -tags cluster -v ./store/ \
    | grep -E "^(--- FAIL|PASS|FAIL|ok)|_test.go:[0-9]+:|^[[:space:]]+(Error|Messages|expected|actual)"
  [ "${PIPESTATUS[0]}" = 0 ]
  log "the worker end to end and worker loss on Temporal on PostgreSQL ($TEMPORAL_ADDRESS)"
  go test -count=1 -timeout 20m -tags cluster -run "^(TestEndToEnd|TestWorkerLossOnCluster)$" -v ./worker/ \
    | grep -E "^(=== RUN|--- |PASS|FAIL|ok)|_test.go:[0-9]+:|^[[:space:]]+(Error|Messages|expected|actual)"
  exit "${PIPESTATUS[0]}"
'
rc=$?
log "test-cluster finished in $((SECONDS - began))s with exit status $rc"
exit $rc
