#!/usr/bin/env bash
# bench-gateway.sh [flags]: the gateway's warm path (gateway/benchgateway).
# Builds the host agent, the gateway and the sample applications, then
# runs the benchmark, which starts an agent and a gateway of its own (no
# store, no Temporal: the warm path uses neither), one warm instance of the
# trivial sample, and prints one line of JSON last. Flags: `go run
# ./gateway/benchgateway --help`.
set -euo pipefail
here=$(dirname "$0")
source "$here/env.sh"
cd "$ROOT"
mkdir -p bin
go build -o bin/ ./hostagent ./gateway/cmd/gateway ./gateway/benchgateway
samples/build.sh >/dev/null
exec bin/benchgateway --bin bin --spec-dir samples/specs "$@"
