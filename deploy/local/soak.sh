#!/usr/bin/env bash
# `make soak`: the fault soak (deploy/local/soak/main.go) on the local
# stack. It builds the worker, the host agent and the soak, brings the
# stack up (with-stack.sh), replays a synthetic trace for 3 minutes while
# SIGKILLing the worker (twice) and one host agent and cutting ClickHouse
# for 20 s at seeded random times, stops every loop, and prints one JSON
# line last; non-zero exit unless every request was recorded once, no
# lease is left and no workflow was terminated. Arguments go to the soak
# (e.g. --seed 42, --duration 4m); logs in .state/soak/logs/.
set -euo pipefail
here=$(dirname "$0")
source "$here/env.sh"
bindir=$STATE/soak/bin
mkdir -p "$bindir"
log "building worker, hostagent and soak"
(cd "$ROOT" && go build -o "$bindir/" ./worker ./hostagent ./deploy/local/soak)
exec "$here/with-stack.sh" "$bindir/soak" --bin "$bindir" --state "$STATE/soak" "$@"
