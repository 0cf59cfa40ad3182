#!/usr/bin/env bash
# `make soak`: the fault soak (deploy/local/soak/main.go) on the local
# stack. It builds the worker, the host agent, the gateway, the trivial
# sample and the soak, brings the stack up (with-stack.sh), replays a
# synthetic trace for 3 minutes as real HTTP requests through the gateway
# to real instance processes, while SIGKILLing the gateway (twice), one
# host agent and one instance process and cutting ClickHouse for 15 s at
# seeded random times, stops every loop, and prints one JSON
# line last; non-zero exit unless every answered request was counted once
# in the arrivals, no lease, instance process or cgroup is left, no
# workflow was terminated, every loop ran in router mode and no cold
# arrival's wake was lost (wakes_lost, defined in deploy/README.md and
# `soak --help`). Arguments go to the soak (e.g. --seed 42,
# --duration 4m, --traffic workflows for the serve-request workflows);
# logs in .state/soak/logs/.
set -euo pipefail
here=$(dirname "$0")
source "$here/env.sh"
bindir=$STATE/soak/bin
mkdir -p "$bindir"
log "building worker, hostagent, gateway, the trivial sample and soak"
(cd "$ROOT" && go build -o "$bindir/" ./worker ./hostagent ./gateway/cmd/gateway ./samples/trivial ./deploy/local/soak)
# The instances run as an unprivileged user under a root agent: it must
# reach the sample's binary.
chmod 755 "$STATE" "$STATE/soak" "$bindir"
# The soak's one JSON line (its only standard output) is printed last,
# after with-stack.sh has had its say.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
"$here/with-stack.sh" "$bindir/soak" --bin "$bindir" --state "$STATE/soak" "$@" >"$out"
rc=$?
cat "$out"
exit $rc
