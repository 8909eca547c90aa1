#!/usr/bin/env bash
# Stops everything start.sh started (by pidfile), removes leftover containers, restores the sysctls the
# kubelet changed, removes the host folders the kubelet created (only if start.sh saw them absent) and
# wipes the state dir (logs are kept in $STATE/logs). The docker data root (images) and the build cache
# are kept. start.sh works again afterwards. Safe to run when nothing is running.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

now_ms() { local t="${EPOCHREALTIME/./}"; echo $(( t / 1000 )); }
T0="$(now_ms)"
log() { local d=$(( $(now_ms) - T0 )); printf 'stop.sh [%3d.%ds]: %s\n' $(( d / 1000 )) $(( d % 1000 / 100 )) "$*"; }

if [ ! -d "$STATE" ]; then
  log "nothing to stop ($STATE does not exist)"
  rm -f "$STATE_FILE"
  exit 0
fi
mkdir -p "$SERVICES_DIR"
exec 8>>"$SERVICES_DIR/.k8s.lock"
flock 8

rm -f "$STATE_FILE"

# A stopped daemon may linger as a zombie until its (non-shell) parent reaps it: that counts as stopped.
alive() {
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop_pid() {  # NAME: SIGTERM, wait up to 20 s, then SIGKILL
  local name="$1" pid
  pid="$(component_pid "$name" || true)"
  if [ -z "$pid" ]; then rm -f "$RUN/$name.pid"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) did not stop in 20 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$RUN/$name.pid"
  log "stopped $name (pid $pid)"
}

# The kubelet first, so it does not restart the containers removed next.
stop_pid kubelet
if component_pid dockerd >/dev/null && [ -S "$DOCKER_SOCK" ]; then
  ids="$(docker_cli ps -aq 2>/dev/null || true)"
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    docker_cli rm -f $ids >/dev/null 2>&1 || true
    log "removed $(echo "$ids" | wc -l) container(s)"
  fi
fi
for c in kube-scheduler kube-controller-manager kube-apiserver etcd registry-auth registry dockerd; do
  stop_pid "$c"
done

# The CNI bridge (the pods' veths went with their network namespaces when their containers were removed).
if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
  ip link delete "$CNI_BRIDGE" type bridge && log "removed the CNI bridge $CNI_BRIDGE" || log "could not remove $CNI_BRIDGE"
fi

# Unmount what the kubelet/docker left mounted under the state dir or /var/lib/kubelet (deepest first).
awk '{print $2}' /proc/self/mounts | sed 's/\\040/ /g' | \
  grep -E "^($STATE|/var/lib/kubelet)/" | sort -r | while IFS= read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done

# Sysctls the kubelet set (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1).
if [ -s "$STATE/sysctl.orig" ]; then
  while IFS='=' read -r key value; do
    [ -n "$key" ] || continue
    sysctl -q -w "$key=$value" >/dev/null 2>&1 || log "could not restore $key=$value"
  done < "$STATE/sysctl.orig"
  log "restored sysctls: $(tr '\n' ' ' < "$STATE/sysctl.orig")"
fi

# Host folders created by the kubelet / hostPath provisioner while this cluster ran.
for p in "${HOST_PATHS[@]}"; do
  marker="$STATE/created$(echo "$p" | tr '/' '_')"
  if [ -e "$marker" ] && [ -e "$p" ]; then
    rm -rf "$p"
    log "removed $p"
  fi
done

# Empty pod cgroups the kubelet created (rmdir only succeeds on empty cgroups).
for hier in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$hier" ] || continue
  find "$hier" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done

# The /etc/hosts line start.sh added for the node name, if it added one.
if grep -q '# added by mrunner tests/services/k8s/start.sh' /etc/hosts 2>/dev/null; then
  grep -v '# added by mrunner tests/services/k8s/start.sh' /etc/hosts > /etc/hosts.mrunner-tmp || true
  cat /etc/hosts.mrunner-tmp > /etc/hosts   # keep the inode (it may be bind-mounted)
  rm -f /etc/hosts.mrunner-tmp
  log "removed the node name line from /etc/hosts"
fi

# Wipe the state dir but keep the logs for post-mortems.
find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
log "done (logs kept in $LOGS)"
