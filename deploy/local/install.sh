#!/usr/bin/env bash
# Installs what the local stack needs and is missing; quiet when all is there.
#   Temporal CLI  -> .tools/bin/temporal         (Go module proxy, pinned)
#   ONNX Runtime  -> .tools/onnxruntime/*.so      (npm registry, checksum verified)
#   ClickHouse    -> clickhouse-server/-client    (Debian packages)
#   Chromium      -> component "browser"         (Debian packages, for the Web UI test)
# For the cluster tests (`make test-cluster`) and the deployment checks:
#   zookeeper        -> Debian's zookeeper (two ClickHouse replicas need it)
#   postgresql       -> Debian's postgresql (the Temporal server's persistence)
#   temporal-server  -> .tools/bin/temporal-server, temporal-sql-tool (Go module proxy, pinned)
#   chdb             -> .tools/chdb/libchdb.so     (npm registry, checksum verified; ClickHouse 26.x)
#   compose          -> Debian's docker-compose  (validates deploy/compose, runs nothing)
# Usage: install.sh [COMPONENT...]   (default: clickhouse onnxruntime temporal)
set -euo pipefail
source "$(dirname "$0")/env.sh"

# Components to install: the arguments, or all but the browser.
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(clickhouse onnxruntime temporal)
for c in "${components[@]}"; do
  case $c in
    clickhouse|onnxruntime|temporal|browser|zookeeper|postgresql|temporal-server|chdb|compose) ;;
    *) die "install.sh: unknown component $c (known: clickhouse onnxruntime temporal browser zookeeper postgresql temporal-server chdb compose)" ;;
  esac
done

apt_updated=0
apt_install() {
  if [ $apt_updated = 0 ]; then
    log "apt-get update"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt_updated=1
  fi
  log "installing Debian packages: $*"
  # policy-rc.d keeps the packages' own init scripts from starting a system
  # ClickHouse on the default ports: we run our own server with our config.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; created=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || { [ $created = 1 ] && rm -f $policy; die "apt-get install $* failed"; }
  [ $created = 1 ] && rm -f $policy
  return 0
}

install_temporal() {
  # The binary reports 0.0.0-DEV, so a stamp file records what was built.
  local stamp=$TEMPORAL_BIN.version
  if [ -x "$TEMPORAL_BIN" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$TEMPORAL_CLI_VERSION" ]; then
    return
  fi
  log "building the Temporal CLI $TEMPORAL_CLI_VERSION from the Go module proxy (about 5 minutes the first time)"
  mkdir -p "$TOOLS/bin"
  GOBIN="$TOOLS/bin" GOFLAGS=-buildvcs=false go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" \
    || die "go install of the Temporal CLI failed"
  echo "$TEMPORAL_CLI_VERSION" >"$stamp"
}

install_onnxruntime() {
  [ -f "$ORT_LIB" ] && return
  command -v npm >/dev/null || die "npm is needed to fetch the ONNX Runtime library"
  log "fetching onnxruntime-node@$ORT_VERSION from the npm registry (86 MB)"
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null) || die "npm pack onnxruntime-node@$ORT_VERSION failed"
  local tgz="$tmp/onnxruntime-node-$ORT_VERSION.tgz"
  local sum; sum=$(sha1sum "$tgz" | cut -d' ' -f1)
  [ "$sum" = "$ORT_NPM_SHASUM" ] || die "checksum mismatch for onnxruntime-node@$ORT_VERSION: got $sum, want $ORT_NPM_SHASUM"
  tar -xzf "$tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1 || die "the npm package has no linux x64 libonnxruntime.so.1"
  mkdir -p "$(dirname "$ORT_LIB")"
  mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ORT_LIB.part"
  mv "$ORT_LIB.part" "$ORT_LIB"
}

install_clickhouse() {
  command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null && return
  apt_install clickhouse-server clickhouse-client
}

install_browser() {
  command -v chromium >/dev/null && return
  apt_install chromium
}

install_zookeeper() {
  [ -x /usr/share/zookeeper/bin/zkServer.sh ] && return
  apt_install zookeeper
}

install_postgresql() {
  [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] && return
  apt_install postgresql
}

install_compose() {
  command -v docker-compose >/dev/null && return
  apt_install docker-compose
}

# The Temporal server and its SQL tool, at the version the CLI embeds.
install_temporal-server() {
  local stamp=$TEMPORAL_SERVER_BIN.version
  if [ -x "$TEMPORAL_SERVER_BIN" ] && [ -x "$TEMPORAL_SQL_TOOL" ] && [ -d "$TEMPORAL_SCHEMA_DIR" ] \
      && [ "$(cat "$stamp" 2>/dev/null)" = "$TEMPORAL_SERVER_VERSION" ]; then
    return
  fi
  log "building the Temporal server $TEMPORAL_SERVER_VERSION and its SQL tool from the Go module proxy (about 3 minutes the first time)"
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "go.temporal.io/server/cmd/server@$TEMPORAL_SERVER_VERSION" \
    "go.temporal.io/server/cmd/tools/sql@$TEMPORAL_SERVER_VERSION" || die "go install of the Temporal server failed"
  mkdir -p "$(dirname "$TEMPORAL_SERVER_BIN")"
  mv "$tmp/server" "$TEMPORAL_SERVER_BIN"
  mv "$tmp/sql" "$TEMPORAL_SQL_TOOL"
  # The SQL schema ships in the server's module: keep a copy with the tools.
  local mod; mod=$(go mod download -json "go.temporal.io/server@$TEMPORAL_SERVER_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$mod/schema/postgresql/v12" ] || die "the Temporal server module has no schema/postgresql/v12"
  rm -rf "$TEMPORAL_SCHEMA_DIR"
  mkdir -p "$(dirname "$TEMPORAL_SCHEMA_DIR")"
  cp -r "$mod/schema/postgresql/v12" "$TEMPORAL_SCHEMA_DIR"
  chmod -R u+w "$TEMPORAL_SCHEMA_DIR"
  echo "$TEMPORAL_SERVER_VERSION" >"$stamp"
}

install_chdb() {
  [ -f "$CHDB_LIB" ] && return
  command -v npm >/dev/null || die "npm is needed to fetch the chDB library"
  log "fetching @chdb/lib-linux-x64-gnu@$CHDB_VERSION from the npm registry (167 MB, unpacks to 559 MB)"
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$CHDB_VERSION" >/dev/null) || die "npm pack @chdb/lib-linux-x64-gnu@$CHDB_VERSION failed"
  local tgz="$tmp/chdb-lib-linux-x64-gnu-$CHDB_VERSION.tgz"
  local sum; sum=$(sha1sum "$tgz" | cut -d' ' -f1)
  [ "$sum" = "$CHDB_NPM_SHASUM" ] || die "checksum mismatch for @chdb/lib-linux-x64-gnu@$CHDB_VERSION: got $sum, want $CHDB_NPM_SHASUM"
  tar -xzf "$tgz" -C "$tmp" || die "cannot unpack the chDB package"
  local lib; lib=$(find "$tmp/package" -name libchdb.so | head -n1)
  [ -n "$lib" ] || die "the chDB package holds no libchdb.so"
  mkdir -p "$(dirname "$CHDB_LIB")"
  mv "$lib" "$CHDB_LIB.part"
  mv "$CHDB_LIB.part" "$CHDB_LIB"
}

for c in "${components[@]}"; do "install_$c"; done
