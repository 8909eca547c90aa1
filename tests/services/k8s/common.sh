# Shared settings for start.sh / stop.sh (sourced, not executed).
# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this file

SERVICES_DIR="${MRUNNER_SERVICES_DIR:-/tmp/mrunner-services}"
STATE="$SERVICES_DIR/k8s"                      # everything of one cluster instance
STATE_FILE="$SERVICES_DIR/k8s.json"            # the contract for tests
K8S_CACHE="${MRUNNER_K8S_CACHE:-/var/cache/mrunner-test/kubernetes}"
KBIN="$K8S_CACHE/bin"                          # built by build.sh
DOCKER_DATA_ROOT="${MRUNNER_DOCKER_DATA_ROOT:-/var/cache/mrunner-test/docker}"  # persistent: images survive

RUN="$STATE/run"          # pidfiles
LOGS="$STATE/logs"
PKI="$STATE/pki"
DOCKER_SOCK="$STATE/docker.sock"
DOCKER_HOST_URL="unix://$DOCKER_SOCK"
DOCKER_EXEC_ROOT="$STATE/docker-exec"
KUBELET_ROOT="$STATE/kubelet"
# CNI (dockershim's --network-plugin=cni): Debian's plugins, our own config, cache and address leases.
CNI_BIN_DIR=/usr/lib/cni
CNI_DIR="$STATE/cni"
CNI_CONF_DIR="$CNI_DIR/net.d"
CNI_BRIDGE=mrunner-cni0                       # created by start.sh, removed by stop.sh
POD_SUBNET="${MRUNNER_K8S_POD_SUBNET:-10.244.0.0/24}"  # the bridge has no address: the host never routes it

API_PORT=6443
ETCD_PORT=2379
ETCD_PEER_PORT=2380
REGISTRY_PORT=5000
AUTH_REGISTRY_PORT=5001
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
CM_PORT=10257
SCHED_PORT=10259

REGISTRY="127.0.0.1:$REGISTRY_PORT"
AUTH_REGISTRY="127.0.0.1:$AUTH_REGISTRY_PORT"
BASE_IMAGE="$REGISTRY/mrunner-test/python:3.11"
PAUSE_IMAGE="$REGISTRY/mrunner-test/pause:3.2"
REGISTRY_USER=mrunner
STORAGE_CLASS=mrunner-test
KUBE_CONTEXT=mrunner-test
API_URL="https://127.0.0.1:$API_PORT"

# Sysctls the kubelet changes at start; start.sh records originals, stop.sh restores them.
KUBELET_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)
# Host paths the kubelet / hostPath provisioner create outside the state dir.
HOST_PATHS=(/var/lib/kubelet /var/log/pods /var/log/containers /tmp/hostpath_pv)


docker_cli() { DOCKER_CONFIG="$STATE/docker-config" docker -H "$DOCKER_HOST_URL" "$@"; }

# pid of a running component, or nothing (checks the pid still runs the expected program).
component_pid() {
  local name="$1" pf="$RUN/$1.pid" pid exe
  [ -s "$pf" ] || return 1
  pid="$(cat "$pf" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  case "$name" in
    registry|registry-auth) [[ "$exe" == */docker-registry* ]] || return 1 ;;
    *) [[ "$exe" == */"$name"* ]] || return 1 ;;
  esac
  echo "$pid"
}
