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
# For the Kubernetes tests (`make test-k8s`):
#   kube             -> .tools/kube/{kube-apiserver,kube-controller-manager,kube-scheduler,etcd,kwok}
#                       (Go module proxy, pinned; about 10 minutes of both cores the first time)
# Usage: install.sh [COMPONENT...]   (default: clickhouse onnxruntime temporal)
set -euo pipefail
source "$(dirname "$0")/env.sh"

# Components to install: the arguments, or all but the browser.
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(clickhouse onnxruntime temporal)
for c in "${components[@]}"; do
  case $c in
    clickhouse|onnxruntime|temporal|browser|zookeeper|postgresql|temporal-server|chdb|compose|kube) ;;
    *) die "install.sh: unknown component $c (known: clickhouse onnxruntime temporal browser zookeeper postgresql temporal-server chdb compose kube)" ;;
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

# A Kubernetes control plane for the tests: the API server, controller
# manager and scheduler of one release, etcd, and kwok (fake nodes and pod
# status). k8s.io/kubernetes cannot be built with `go install`: its go.mod
# points the k8s.io staging modules at folders its module zip lacks, so the
# module is copied and those replaces pointed at the published modules.
install_kube() {
  # kube.sh makes the pods' network namespace, the service-account key and
  # checks readiness with these.
  local pkgs=()
  command -v ip >/dev/null || pkgs+=(iproute2)
  command -v openssl >/dev/null || pkgs+=(openssl)
  command -v curl >/dev/null || pkgs+=(curl)
  [ ${#pkgs[@]} = 0 ] || apt_install "${pkgs[@]}"
  local stamp=$KUBE_DIR/version want="$KUBE_VERSION etcd $ETCD_VERSION kwok $KWOK_VERSION"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
  log "building Kubernetes $KUBE_VERSION (API server, controller manager, scheduler), etcd $ETCD_VERSION and kwok $KWOK_VERSION from the Go module proxy (about 10 minutes the first time)"
  local tmp; tmp=$(mktemp -d)
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' RETURN
  mkdir -p "$KUBE_DIR"
  local mod; mod=$(GOFLAGS= go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$mod/cmd/kube-apiserver" ] || die "go mod download k8s.io/kubernetes@$KUBE_VERSION gave no cmd/kube-apiserver"
  cp -r "$mod" "$tmp/kubernetes"; chmod -R u+w "$tmp/kubernetes"
  local staging=${KUBE_VERSION/v1./v0.} edits=()
  while read -r m; do edits+=("-dropreplace=$m" "-replace=$m=$m@$staging"); done \
    < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$tmp/kubernetes/go.mod")
  [ ${#edits[@]} -gt 0 ] || die "k8s.io/kubernetes@$KUBE_VERSION: no staging replaces found in its go.mod"
  (cd "$tmp/kubernetes" && go mod edit "${edits[@]}") || die "cannot point the staging modules at $staging"
  (cd "$tmp/kubernetes" && GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" go build -o "$KUBE_DIR/" \
      -ldflags "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" \
      ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler) \
    || die "building the Kubernetes control plane failed"
  mkdir -p "$tmp/etcd"
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$tmp/etcd/main.go"
  (cd "$tmp/etcd" && go mod init forewarm.local/etcd >/dev/null 2>&1 \
      && GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 \
      && GOFLAGS="-mod=mod -buildvcs=false" go build -o "$KUBE_DIR/etcd" .) || die "building etcd $ETCD_VERSION failed"
  GOBIN="$KUBE_DIR" GOFLAGS=-buildvcs=false go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" || die "go install of kwok failed"
  echo "$want" >"$stamp"
}

for c in "${components[@]}"; do "install_$c"; done
