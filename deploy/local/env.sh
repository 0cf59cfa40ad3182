# Shared settings for the local stack scripts; sourced, never run.
# Every value can be overridden from the environment.
ROOT=${FOREWARM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TOOLS=${FOREWARM_TOOLS:-$ROOT/.tools}
STATE=${FOREWARM_STATE:-$ROOT/.state}

TEMPORAL_CLI_VERSION=${TEMPORAL_CLI_VERSION:-v1.5.1}
TEMPORAL_BIN=$TOOLS/bin/temporal
TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TEMPORAL_UI_PORT:-8233}
GATEWAY_PORT=${GATEWAY_PORT:-18080}

CLICKHOUSE_TCP_PORT=${CLICKHOUSE_TCP_PORT:-19000}
CLICKHOUSE_HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-18123}

ORT_VERSION=${ORT_VERSION:-1.24.3}
ORT_NPM_SHASUM=${ORT_NPM_SHASUM:-ec8da99c335aa5ea95559a3ac1ae915a89541d5e}
ORT_LIB=$TOOLS/onnxruntime/libonnxruntime.so.$ORT_VERSION

# The cluster tests' services (`make test-cluster`): ZooKeeper, two
# ClickHouse replicas of one shard, PostgreSQL and a Temporal server on it.
ZK_PORT=${ZK_PORT:-12181}
CLICKHOUSE_CLUSTER_NAME=${CLICKHOUSE_CLUSTER_NAME:-forewarm}
REPLICA1_TCP_PORT=${REPLICA1_TCP_PORT:-19001}
REPLICA2_TCP_PORT=${REPLICA2_TCP_PORT:-19002}
REPLICA1_HTTP_PORT=${REPLICA1_HTTP_PORT:-18124}
REPLICA2_HTTP_PORT=${REPLICA2_HTTP_PORT:-18125}
REPLICA1_INTERSERVER_PORT=${REPLICA1_INTERSERVER_PORT:-19011}
REPLICA2_INTERSERVER_PORT=${REPLICA2_INTERSERVER_PORT:-19012}
PG_PORT=${PG_PORT:-15432}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
# PostgreSQL's folder: its data and socket. Run as root, the server runs as
# the postgres user, which cannot reach a checkout under a private folder
# (mode 0700, as /root and `mktemp -d` make): so as root it lives under
# /var/lib/forewarm, one folder per state folder (named after its path; the
# file state-folder inside names it). Otherwise under the state folder.
if [ -z "${FOREWARM_PG_DIR:-}" ] && [ "$(id -u)" = 0 ]; then
  PG_DIR=/var/lib/forewarm/postgresql-$(basename "$ROOT")-$(printf '%s' "$STATE" | sha256sum | cut -c1-12)
else
  PG_DIR=${FOREWARM_PG_DIR:-$STATE/postgresql}
fi
TEMPORAL_SERVER_VERSION=${TEMPORAL_SERVER_VERSION:-v1.29.1}  # the server the CLI above embeds
TEMPORAL_SERVER_BIN=$TOOLS/bin/temporal-server
TEMPORAL_SQL_TOOL=$TOOLS/bin/temporal-sql-tool
TEMPORAL_SCHEMA_DIR=$TOOLS/temporal-server/schema/postgresql/v12  # copied from the server's module
# The server's ports: frontend, history, matching, internal worker, the
# membership ports at frontend+10 … +13 and the frontend's HTTP API at +20.
TEMPORAL_SERVER_PORT=${TEMPORAL_SERVER_PORT:-17233}
TEMPORAL_SERVER_HISTORY_PORT=${TEMPORAL_SERVER_HISTORY_PORT:-$((TEMPORAL_SERVER_PORT + 1))}
TEMPORAL_SERVER_MATCHING_PORT=${TEMPORAL_SERVER_MATCHING_PORT:-$((TEMPORAL_SERVER_PORT + 2))}
TEMPORAL_SERVER_WORKER_PORT=${TEMPORAL_SERVER_WORKER_PORT:-$((TEMPORAL_SERVER_PORT + 6))}
TEMPORAL_SERVER_MEMBERSHIP_PORT=${TEMPORAL_SERVER_MEMBERSHIP_PORT:-$((TEMPORAL_SERVER_PORT + 10))}
TEMPORAL_SERVER_HTTP_PORT=${TEMPORAL_SERVER_HTTP_PORT:-$((TEMPORAL_SERVER_PORT + 20))}

# chDB: ClickHouse 26.x in-process, for the store's SQL on a modern engine.
CHDB_VERSION=${CHDB_VERSION:-26.5.3}
CHDB_NPM_SHASUM=${CHDB_NPM_SHASUM:-3e52ecb7d894d9ebb1a6a50ac03f64208cc65501}
CHDB_LIB=$TOOLS/chdb/libchdb.so

# The Kubernetes tests' control plane (`make test-k8s`), built by install.sh kube.
KUBE_VERSION=${KUBE_VERSION:-v1.34.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.7.0}
KUBE_DIR=$TOOLS/kube
KUBE_STATE=$STATE/kube
ETCD_PORT=${ETCD_PORT:-23790}
KUBE_API_PORT=${KUBE_API_PORT:-16443}

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
