#!/usr/bin/env bash
# bench-scale.sh [flags]: the scale benchmark (docs/scale.md). Builds the
# binaries, makes sure ClickHouse runs (the stack's), and runs
# scale/benchscale, which starts a Temporal dev server and a worker of its
# own, N prediction loops and a router, measures, stops what it started and
# prints one line of JSON last. Flags and SCALE_* variables: see
# `go run ./scale/benchscale --help`.
set -euo pipefail
here=$(dirname "$0")
source "$here/env.sh"
cd "$ROOT"
"$here/install.sh" temporal onnxruntime
mkdir -p bin
go build -o bin/ ./worker ./starter ./hostagent ./scale/benchscale
STACK_SERVICES=clickhouse exec "$here/with-stack.sh" bash -c \
  'exec bin/benchscale --clickhouse-pid "$(cat "$1")" --temporal-bin "$2" "${@:3}"' \
  bench-scale "$STATE/clickhouse.pid" "$TEMPORAL_BIN" "$@"
