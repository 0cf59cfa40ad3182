#!/usr/bin/env bash
# A real Kubernetes control plane on this machine for the tests: etcd, the
# API server, the controller manager (endpoints, garbage collection), the
# scheduler, and kwok, which turns annotated Node objects into nodes and
# gives their pods an address and a Ready status (no container runs).
#
# Pods get addresses in $KUBE_POD_CIDR, which lives on the loopback of a
# network namespace this script makes ($KUBE_NETNS), reached from the host
# over a veth pair: the API server refuses loopback addresses in
# EndpointSlices, and test traffic must not go to the host's own private
# addresses. A test stands up the application inside the namespace (`ip
# netns exec $KUBE_NETNS ...`, bound to 0.0.0.0) and every pod address
# answers with it.
#
#   kube.sh up      start it all (idempotent); writes $KUBE_STATE/admin.kubeconfig
#   kube.sh down    stop it all, delete the namespace, route and state
#   kube.sh env     print the variables the tests read
# Root is needed (network namespace, route).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"

KUBE_NETNS=${KUBE_NETNS:-fwkube}
KUBE_POD_CIDR=${KUBE_POD_CIDR:-10.250.0.0/24}
KUBE_LINK_HOST=${KUBE_LINK_HOST:-10.250.255.1}
KUBE_LINK_NS=${KUBE_LINK_NS:-10.250.255.2}
KUBECONFIG_FILE=$KUBE_STATE/admin.kubeconfig
pids=$KUBE_STATE/pids

start() { # name, then the command: logs to $KUBE_STATE/NAME.log
  local name=$1; shift
  "$@" >"$KUBE_STATE/$name.log" 2>&1 &
  echo "$name $!" >>"$pids"
}

network_up() {
  ip netns list | grep -qw "$KUBE_NETNS" && return
  local h=${KUBE_NETNS}-h p=${KUBE_NETNS}-p
  ip netns add "$KUBE_NETNS"
  ip link add "$h" type veth peer name "$p"
  ip link set "$p" netns "$KUBE_NETNS"
  ip addr add "$KUBE_LINK_HOST/30" dev "$h"
  ip link set "$h" up
  ip netns exec "$KUBE_NETNS" ip addr add "$KUBE_LINK_NS/30" dev "$p"
  ip netns exec "$KUBE_NETNS" ip link set "$p" up
  ip netns exec "$KUBE_NETNS" ip link set lo up
  ip netns exec "$KUBE_NETNS" ip addr add "$KUBE_POD_CIDR" dev lo
  ip route add "$KUBE_POD_CIDR" via "$KUBE_LINK_NS" dev "$h"
}

network_down() {
  ip route del "$KUBE_POD_CIDR" 2>/dev/null || true
  ip link del "${KUBE_NETNS}-h" 2>/dev/null || true
  ip netns del "$KUBE_NETNS" 2>/dev/null || true
}

wait_for() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up within ${secs}s (logs in $KUBE_STATE)"
}

up() {
  [ "$(id -u)" = 0 ] || die "kube.sh needs root (a network namespace and a route)"
  "$here/install.sh" kube
  if [ -f "$pids" ] && curl -skf --max-time 2 "https://127.0.0.1:$KUBE_API_PORT/readyz" -H "Authorization: Bearer $(cat "$KUBE_STATE/token")" >/dev/null; then
    return
  fi
  down_processes
  mkdir -p "$KUBE_STATE/certs" "$KUBE_STATE/etcd"
  network_up
  [ -f "$KUBE_STATE/sa.key" ] || openssl genrsa -out "$KUBE_STATE/sa.key" 2048 2>/dev/null
  openssl rsa -in "$KUBE_STATE/sa.key" -pubout -out "$KUBE_STATE/sa.pub" 2>/dev/null
  [ -f "$KUBE_STATE/token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KUBE_STATE/token"
  local token; token=$(cat "$KUBE_STATE/token")
  echo "$token,admin,admin,system:masters" >"$KUBE_STATE/tokens.csv"
  start etcd "$KUBE_DIR/etcd" --data-dir "$KUBE_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-cluster "default=http://127.0.0.1:$((ETCD_PORT + 10))"
  start kube-apiserver "$KUBE_DIR/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --secure-port "$KUBE_API_PORT" --bind-address 127.0.0.1 --cert-dir "$KUBE_STATE/certs" \
    --service-account-key-file "$KUBE_STATE/sa.pub" --service-account-signing-key-file "$KUBE_STATE/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --token-auth-file "$KUBE_STATE/tokens.csv" \
    --authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/16 --enable-admission-plugins PodSecurity
  wait_for "the API server" 90 curl -skf "https://127.0.0.1:$KUBE_API_PORT/readyz" -H "Authorization: Bearer $token"
  cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$KUBE_API_PORT
    certificate-authority: $KUBE_STATE/certs/apiserver.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
EOF
  start kube-controller-manager "$KUBE_DIR/kube-controller-manager" --kubeconfig "$KUBECONFIG_FILE" \
    --service-account-private-key-file "$KUBE_STATE/sa.key" --controllers '*,-serviceaccount-token' \
    --leader-elect=false --secure-port 0
  start kube-scheduler "$KUBE_DIR/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" --leader-elect=false --secure-port 0
  start kwok "$KUBE_DIR/kwok" --kubeconfig "$KUBECONFIG_FILE" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake --cidr "$KUBE_POD_CIDR" --node-ip "$KUBE_LINK_NS"
  log "Kubernetes $KUBE_VERSION control plane up: KUBECONFIG=$KUBECONFIG_FILE, pods in $KUBE_POD_CIDR (network namespace $KUBE_NETNS)"
}

down_processes() {
  [ -f "$pids" ] || return 0
  local pid
  while read -r _ pid; do kill "$pid" 2>/dev/null || true; done <"$pids"
  for _ in $(seq 50); do
    local alive=0
    while read -r _ pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$pids"
    [ $alive = 0 ] && break
    sleep 0.2
  done
  while read -r _ pid; do kill -9 "$pid" 2>/dev/null || true; done <"$pids"
  rm -f "$pids"
}

down() {
  down_processes
  network_down
  rm -rf "$KUBE_STATE"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  env) printf 'FOREWARM_KUBECONFIG=%s\nFOREWARM_KUBE_NETNS=%s\nFOREWARM_KUBE_POD_CIDR=%s\n' "$KUBECONFIG_FILE" "$KUBE_NETNS" "$KUBE_POD_CIDR" ;;
  *) die "usage: kube.sh up|down|env" ;;
esac
