# Shared settings for the local stack scripts; sourced, never run.
# Every value can be overridden from the environment.
ROOT=${FOREWARM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TOOLS=${FOREWARM_TOOLS:-$ROOT/.tools}
STATE=${FOREWARM_STATE:-$ROOT/.state}

TEMPORAL_CLI_VERSION=${TEMPORAL_CLI_VERSION:-v1.5.1}
TEMPORAL_BIN=$TOOLS/bin/temporal
TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TEMPORAL_UI_PORT:-8233}

CLICKHOUSE_TCP_PORT=${CLICKHOUSE_TCP_PORT:-19000}
CLICKHOUSE_HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-18123}

ORT_VERSION=${ORT_VERSION:-1.24.3}
ORT_NPM_SHASUM=${ORT_NPM_SHASUM:-ec8da99c335aa5ea95559a3ac1ae915a89541d5e}
ORT_LIB=$TOOLS/onnxruntime/libonnxruntime.so.$ORT_VERSION

# Custom search attributes registered on the dev server (Name=Type).
# Keep in step with workflows/names.go.
SEARCH_ATTRIBUTES=(
  ForewarmApp=Keyword
  ForewarmLoopState=Keyword
  ForewarmThreshold=Double
  ForewarmHost=Keyword
  ForewarmModelVersion=Keyword
)

log() { printf 'forewarm: %s\n' "$*" >&2; }
die() { printf 'forewarm: error: %s\n' "$*" >&2; exit 1; }
