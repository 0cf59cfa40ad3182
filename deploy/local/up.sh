#!/usr/bin/env bash
# Starts the local stack (ClickHouse, Temporal dev server with the Web UI),
# installing what is missing first. Idempotent: a service already started
# by us and answering is left alone, and nothing is printed for it.
#
# The cluster tests' services start only when named:
#   zookeeper        ZooKeeper on 127.0.0.1:$ZK_PORT
#   replica1/2       two ClickHouse servers, replicas of one shard of cluster
#                    $CLICKHOUSE_CLUSTER_NAME (ports $REPLICA1_TCP_PORT, $REPLICA2_TCP_PORT);
#                    "replicas" starts both (and ZooKeeper)
#   postgresql       PostgreSQL on 127.0.0.1:$PG_PORT (a cluster of our own in $PG_DIR:
#                    under .state/, or as root under /var/lib/forewarm; env.sh)
#   temporal-server  the Temporal server on PostgreSQL, frontend 127.0.0.1:$TEMPORAL_SERVER_PORT
set -euo pipefail
here=$(dirname "$0")
source "$here/env.sh"

# Services to start: the arguments, or the default two.
services=()
for s in "${@:-clickhouse temporal}"; do
  for w in $s; do
    case $w in
      replicas) services+=(zookeeper replica1 replica2) ;;
      clickhouse|temporal|zookeeper|replica1|replica2|postgresql|temporal-server) services+=("$w") ;;
      *) die "up.sh: unknown service $w (known: clickhouse temporal zookeeper replica1 replica2 replicas postgresql temporal-server)" ;;
    esac
  done
done
components=(onnxruntime)
for s in "${services[@]}"; do
  case $s in
    clickhouse|replica1|replica2) components+=(clickhouse) ;;
    temporal) components+=(temporal) ;;
    zookeeper) components+=(zookeeper) ;;
    postgresql) components+=(postgresql) ;;
    temporal-server) components+=(postgresql temporal temporal-server) ;;
  esac
done
"$here/install.sh" $(printf '%s\n' "${components[@]}" | sort -u)
mkdir -p "$STATE/logs"

# running PIDFILE: true when the pid in PIDFILE is alive.
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# started NAME: notes a service this run started, for callers that stop
# only what they started (make test): FOREWARM_STARTED_LIST names the file.
started() { [ -n "${FOREWARM_STARTED_LIST:-}" ] && echo "$1" >>"$FOREWARM_STARTED_LIST"; return 0; }

# fail NAME LOG REASON: one line of reason, then the log's tail, exit 1.
fail() {
  printf 'forewarm: %s did not start: %s\n' "$1" "$3" >&2
  if [ -s "$2" ]; then printf -- '--- last lines of %s ---\n' "$2" >&2; tail -n 15 "$2" >&2; fi
  exit 1
}

# wait_until NAME PIDFILE LOG SECONDS CMD...: polls CMD until it succeeds.
wait_until() {
  local name=$1 pidfile=$2 logf=$3 secs=$4; shift 4
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    running "$pidfile" || { rm -f "$pidfile"; fail "$name" "$logf" "the process exited"; }
    [ $SECONDS -lt $deadline ] || fail "$name" "$logf" "no answer within ${secs}s"
    sleep 0.3
  done
}

# clickhouse_server NAME TCP_PORT HTTP_PORT [REPLICA INTERSERVER_PORT]:
# a ClickHouse server with our config under $STATE/NAME; with REPLICA it is
# that replica of the local cluster (deploy/clickhouse/cluster.xml).
clickhouse_server() {
  local name=$1 tcp=$2 http=$3 replica=${4:-} interserver=${5:-}
  local dir=$STATE/$name pidfile=$STATE/$name.pid logf=$STATE/logs/$name.err.log
  local ping=(clickhouse-client --host 127.0.0.1 --port "$tcp" --query 'SELECT 1')
  local label=ClickHouse
  [ "$name" = clickhouse ] || label="ClickHouse $name"
  if running "$pidfile" && "${ping[@]}" >/dev/null 2>&1; then return; fi
  local ports=("$tcp" "$http")
  [ -z "$replica" ] || ports+=("$interserver")
  for p in "${ports[@]}"; do
    port_free "$p" || fail "$label" "$logf" "port $p on 127.0.0.1 is already taken by another process (set CLICKHOUSE_TCP_PORT / CLICKHOUSE_HTTP_PORT, or the replicas' ports in deploy/local/env.sh)"
  done
  mkdir -p "$dir/data/" "$dir/tmp/" "$dir/user_files/" "$dir/format_schemas/" "$dir/config.d"
  sed -e "s|@DIR@|$dir|g" -e "s|@LOGS@|$STATE/logs|g" -e "s|@NAME@|$name|g" \
      -e "s|@TCP_PORT@|$tcp|g" -e "s|@HTTP_PORT@|$http|g" \
      "$ROOT/deploy/clickhouse/config.xml" >"$dir/config.xml"
  cp "$ROOT/deploy/clickhouse/users.xml" "$dir/users.xml"
  rm -f "$dir/config.d/cluster.xml"
  if [ -n "$replica" ]; then
    sed -e "s|@CLUSTER@|$CLICKHOUSE_CLUSTER_NAME|g" -e "s|@REPLICA@|$replica|g" -e "s|@ZK_PORT@|$ZK_PORT|g" \
        -e "s|@INTERSERVER_PORT@|$interserver|g" \
        -e "s|@REPLICA1_PORT@|$REPLICA1_TCP_PORT|g" -e "s|@REPLICA2_PORT@|$REPLICA2_TCP_PORT|g" \
        "$ROOT/deploy/clickhouse/cluster.xml" >"$dir/config.d/cluster.xml"
  fi
  : >"$logf"
  log "starting ClickHouse${replica:+ replica $replica} on 127.0.0.1:$tcp"
  # Started directly (no subshell) so the pid file holds the server itself.
  nohup clickhouse-server --config-file="$dir/config.xml" --pidfile="$pidfile.server" \
      >>"$STATE/logs/$name.stdout.log" 2>>"$logf" </dev/null &
  echo $! >"$pidfile"
  started "$name"
  wait_until "$label" "$pidfile" "$logf" 60 "${ping[@]}"
}

start_clickhouse() { clickhouse_server clickhouse "$CLICKHOUSE_TCP_PORT" "$CLICKHOUSE_HTTP_PORT"; }
start_replica1() { start_zookeeper; clickhouse_server replica1 "$REPLICA1_TCP_PORT" "$REPLICA1_HTTP_PORT" r1 "$REPLICA1_INTERSERVER_PORT"; }
start_replica2() { start_zookeeper; clickhouse_server replica2 "$REPLICA2_TCP_PORT" "$REPLICA2_HTTP_PORT" r2 "$REPLICA2_INTERSERVER_PORT"; }

# zk_ok: ZooKeeper answers "imok" to "ruok".
zk_ok() { bash -c "exec 3<>/dev/tcp/127.0.0.1/$ZK_PORT; echo ruok >&3; grep -q imok <&3"; }

start_zookeeper() {
  local dir=$STATE/zookeeper pidfile=$STATE/zookeeper.pid logf=$STATE/logs/zookeeper.log
  if running "$pidfile" && zk_ok >/dev/null 2>&1; then return; fi
  port_free "$ZK_PORT" || fail ZooKeeper "$logf" "port $ZK_PORT on 127.0.0.1 is already taken by another process (set ZK_PORT)"
  mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
maxClientCnxns=200
autopurge.purgeInterval=1
CFG
  : >"$logf"
  log "starting ZooKeeper on 127.0.0.1:$ZK_PORT"
  nohup java -Xmx256m -cp "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar" \
      -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
      org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" >>"$logf" 2>&1 </dev/null &
  echo $! >"$pidfile"
  started zookeeper
  wait_until ZooKeeper "$pidfile" "$logf" 60 zk_ok
}

# as_postgres: the command prefix that runs a program as the postgres user
# when we are root (PostgreSQL refuses to run as root), else nothing.
as_postgres=()
[ "$(id -u)" = 0 ] && as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups --)

# pg_dir: makes PostgreSQL's folder $PG_DIR, owned by the user the server
# runs as, and checks that this user can reach it; fails saying what is
# needed otherwise. Called before any service starts.
pg_dir() {
  local dir=$PG_DIR
  # Parents it creates (/var/lib/forewarm) must be open to the postgres user.
  (umask 022 && mkdir -p "$dir/run") || fail PostgreSQL /dev/null "cannot create $dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$dir" "$dir/run" && chmod 700 "$dir" || fail PostgreSQL /dev/null "cannot give $dir to the postgres user"
    "${as_postgres[@]}" test -w "$dir" -a -x "$dir" -a -w "$dir/run" \
      || fail PostgreSQL /dev/null "the postgres user cannot reach $dir (a folder above it is private to root?): set FOREWARM_PG_DIR to a folder it can reach"
  fi
  [ -f "$dir/state-folder" ] || printf '%s\n' "$STATE" >"$dir/state-folder"
}

start_postgresql() {
  local dir=$PG_DIR pidfile=$STATE/postgresql.pid logf=$STATE/logs/postgresql.log
  local ping=("$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q)
  if running "$pidfile" && "${ping[@]}" >/dev/null 2>&1; then return; fi
  port_free "$PG_PORT" || fail PostgreSQL "$logf" "port $PG_PORT on 127.0.0.1 is already taken by another process (set PG_PORT)"
  pg_dir
  : >"$logf"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    # A new cluster holds no Temporal schema, whatever an earlier one held.
    rm -f "$STATE/temporal-server/schema.version"
    log "creating a PostgreSQL cluster in $dir/data"
    "${as_postgres[@]}" "$PG_BIN/initdb" -D "$dir/data" -U temporal --auth=trust -E UTF8 >>"$logf" 2>&1 \
      || fail PostgreSQL "$logf" "initdb failed"
  fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  # Loopback only, trusted: a test cluster of our own, no password to leak.
  nohup "${as_postgres[@]}" "$PG_BIN/postgres" -D "$dir/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
      -c unix_socket_directories="$dir/run" -c max_connections=200 >>"$logf" 2>&1 </dev/null &
  echo $! >"$pidfile"
  started postgresql
  wait_until PostgreSQL "$pidfile" "$logf" 60 "${ping[@]}"
}

# The Temporal server on PostgreSQL: schema through its SQL tool (once),
# config from deploy/temporal/, then the namespace and our search attributes.
start_temporal-server() {
  start_postgresql
  local dir=$STATE/temporal-server pidfile=$STATE/temporal-server.pid logf=$STATE/logs/temporal-server.log
  local addr=127.0.0.1:$TEMPORAL_SERVER_PORT
  local health=("$TEMPORAL_BIN" operator cluster health --address "$addr")
  if running "$pidfile" && "${health[@]}" >/dev/null 2>&1; then return; fi
  local m=$TEMPORAL_SERVER_MEMBERSHIP_PORT
  for p in "$TEMPORAL_SERVER_PORT" "$TEMPORAL_SERVER_HISTORY_PORT" "$TEMPORAL_SERVER_MATCHING_PORT" "$TEMPORAL_SERVER_WORKER_PORT" \
      "$TEMPORAL_SERVER_HTTP_PORT" "$m" $((m + 1)) $((m + 2)) $((m + 3)); do
    port_free "$p" || fail "Temporal server" "$logf" "port $p on 127.0.0.1 is already taken by another process (set TEMPORAL_SERVER_PORT)"
  done
  mkdir -p "$dir/config"
  : >"$logf"
  if [ "$(cat "$dir/schema.version" 2>/dev/null)" != "$TEMPORAL_SERVER_VERSION" ]; then
    log "creating the Temporal schema in PostgreSQL ($TEMPORAL_SERVER_VERSION)"
    local tool=("$TEMPORAL_SQL_TOOL" --plugin postgres12 --ep 127.0.0.1 -p "$PG_PORT" -u temporal --pw temporal)
    for db in temporal:temporal temporal_visibility:visibility; do
      local name=${db%%:*} schema=$TEMPORAL_SCHEMA_DIR/${db##*:}/versioned
      "${tool[@]}" --db "$name" create-database >>"$logf" 2>&1 || grep -q "already exists" "$logf" \
        || fail "Temporal server" "$logf" "cannot create database $name"
      "${tool[@]}" --db "$name" setup-schema -v 0.0 >>"$logf" 2>&1 || fail "Temporal server" "$logf" "setup-schema of $name failed"
      "${tool[@]}" --db "$name" update-schema -d "$schema" >>"$logf" 2>&1 || fail "Temporal server" "$logf" "update-schema of $name failed"
    done
    echo "$TEMPORAL_SERVER_VERSION" >"$dir/schema.version"
  fi
  sed -e "s|@DIR@|$dir|g" -e "s|@PG_PORT@|$PG_PORT|g" -e "s|@FRONTEND_PORT@|$TEMPORAL_SERVER_PORT|g" \
      -e "s|@HISTORY_PORT@|$TEMPORAL_SERVER_HISTORY_PORT|g" -e "s|@MATCHING_PORT@|$TEMPORAL_SERVER_MATCHING_PORT|g" \
      -e "s|@WORKER_PORT@|$TEMPORAL_SERVER_WORKER_PORT|g" -e "s|@HTTP_PORT@|$TEMPORAL_SERVER_HTTP_PORT|g" \
      -e "s|@MEMBERSHIP_FRONTEND_PORT@|$m|g" -e "s|@MEMBERSHIP_HISTORY_PORT@|$((m + 1))|g" \
      -e "s|@MEMBERSHIP_MATCHING_PORT@|$((m + 2))|g" -e "s|@MEMBERSHIP_WORKER_PORT@|$((m + 3))|g" \
      "$ROOT/deploy/temporal/server.yaml" >"$dir/config/development.yaml"
  cp "$ROOT/deploy/temporal/dynamicconfig.yaml" "$dir/config/dynamicconfig.yaml"
  log "starting the Temporal server $TEMPORAL_SERVER_VERSION on PostgreSQL, frontend $addr"
  nohup "$TEMPORAL_SERVER_BIN" --root "$dir" --config config --env development --allow-no-auth start \
      >>"$logf" 2>&1 </dev/null &
  echo $! >"$pidfile"
  started temporal-server
  wait_until "Temporal server" "$pidfile" "$logf" 120 "${health[@]}"
  local cli=("$TEMPORAL_BIN" --address "$addr" --namespace default)
  "${cli[@]}" operator namespace describe >/dev/null 2>&1 \
    || "${cli[@]}" operator namespace create --retention 72h >>"$logf" 2>&1 \
    || fail "Temporal server" "$logf" "cannot create the default namespace"
  # A new namespace becomes usable when the namespace cache refreshes.
  wait_until "Temporal namespace default" "$pidfile" "$logf" 60 "${cli[@]}" workflow list --limit 1
  for a in "${SEARCH_ATTRIBUTES[@]}"; do
    "${cli[@]}" operator search-attribute list 2>/dev/null | grep -qw "${a%%=*}" && continue
    "${cli[@]}" operator search-attribute create --name "${a%%=*}" --type "${a##*=}" >>"$logf" 2>&1 \
      || fail "Temporal server" "$logf" "cannot create search attribute $a"
  done
}

start_temporal() {
  local pidfile=$STATE/temporal.pid logf=$STATE/logs/temporal.log
  local health=("$TEMPORAL_BIN" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT")
  if running "$pidfile" && "${health[@]}" >/dev/null 2>&1; then return; fi
  for p in "$TEMPORAL_PORT" "$TEMPORAL_UI_PORT"; do
    port_free "$p" || fail Temporal "$logf" "port $p on 127.0.0.1 is already taken by another process (set TEMPORAL_PORT / TEMPORAL_UI_PORT)"
  done
  mkdir -p "$STATE/temporal"
  local sa=()
  for a in "${SEARCH_ATTRIBUTES[@]}"; do sa+=(--search-attribute "$a"); done
  : >"$logf"
  log "starting the Temporal dev server on 127.0.0.1:$TEMPORAL_PORT (Web UI http://127.0.0.1:$TEMPORAL_UI_PORT)"
  # WAL and one task-queue partition: several times the throughput of the
  # defaults on two cores (measured: 5 -> 9 serve requests/s; loops keep up).
  nohup "$TEMPORAL_BIN" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
      --db-filename "$STATE/temporal/temporal.db" --log-level warn "${sa[@]}" \
      --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
      --dynamic-config-value matching.numTaskqueueReadPartitions=1 \
      --dynamic-config-value matching.numTaskqueueWritePartitions=1 \
      >>"$logf" 2>&1 </dev/null &
  echo $! >"$pidfile"
  started temporal
  wait_until Temporal "$pidfile" "$logf" 90 "${health[@]}"
  wait_until "Temporal Web UI" "$pidfile" "$logf" 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$TEMPORAL_UI_PORT"
}

# PostgreSQL's folder is checked before anything starts.
for s in "${services[@]}"; do
  case $s in postgresql|temporal-server) pg_dir; break ;; esac
done
for s in "${services[@]}"; do "start_$s"; done
