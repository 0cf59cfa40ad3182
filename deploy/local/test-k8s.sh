#!/usr/bin/env bash
# `make test-k8s`: the Kubernetes driver, the manifests and a loop warming
# pods, against a real control plane (deploy/local/kube.sh: etcd, API server,
# controller manager, scheduler, kwok) built from the Go module proxy. Starts
# it, runs the tests, and stops it all on every exit path (KEEP=1 leaves it
# up; `deploy/local/kube.sh down` stops it then).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
began=$SECONDS
finish() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ $rc != 0 ] && [ -d "$KUBE_STATE" ]; then
    for f in "$KUBE_STATE"/*.log; do log "last lines of $f:"; tail -n 5 "$f" >&2; done
  fi
  [ "${KEEP:-}" = 1 ] || "$here/kube.sh" down
  log "test-k8s finished in $((SECONDS - began))s with exit status $rc"
  exit $rc
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
"$here/kube.sh" up || exit 1
set -a
eval "$("$here/kube.sh" env)"
set +a
cd "$ROOT"
filter() { grep -E "^(=== RUN|--- |PASS|FAIL|ok)|_test.go:[0-9]+:|^[[:space:]]+(Error|Messages|expected|actual)"; }
log "the driver, the janitor, Knative windows and every overlay on the control plane"
go test -count=1 -timeout 15m -tags k8s -v ./kube/... ./deploy/kubernetes/... | filter
[ "${PIPESTATUS[0]}" = 0 ] || exit 1
log "a loop on Temporal and ClickHouse warming pods on the control plane, and a lost worker's pod"
"$here/with-stack.sh" bash -c '
  go test -count=1 -timeout 15m -tags k8s -v -run "^TestLoopWarmsPodsOnKubernetes$" ./worker/ \
    | grep -E "^(=== RUN|--- |PASS|FAIL|ok)|_test.go:[0-9]+:|^[[:space:]]+(Error|Messages|expected|actual)"
  exit "${PIPESTATUS[0]}"
'
