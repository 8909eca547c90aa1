#!/usr/bin/env bash
# Idempotent install of the Debian packages the loopback Kubernetes test cluster needs.
# Package maintainer scripts are prevented from starting services (no systemd here, and the
# default dockerd would rewire the host network): a temporary /usr/sbin/policy-rc.d exits 101.
set -euo pipefail

PACKAGES=(
  docker.io            # dockerd 20.10 + containerd + runc (we start a PRIVATE dockerd ourselves)
  docker-registry      # CNCF distribution 2.8 registry binary
  containernetworking-plugins  # CNI bridge, host-local and loopback: each pod in its own network namespace
  etcd-server          # etcd 3.4 for kube-apiserver
  golang-go            # Go 1.19 to build Kubernetes 1.20 from Debian's source package
  golang-github-modern-go-reflect2-dev  # reflect2 1.0.2 source (fix for the vendored 1.0.1)
  jq rsync dpkg-dev make gcc libc6-dev   # Kubernetes build + pause.c
  apache2-utils        # htpasswd for the auth registry
  busybox-static       # shell/coreutils in the locally made Python image
  openssl ca-certificates curl
  iptables kmod conntrack util-linux mount  # things kubelet/dockerd look for (util-linux: nsenter for CNI)
  iproute2             # ip: stop.sh removes the CNI bridge
  python3 python3-venv python3-pip          # copied into the base image
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install.sh: all packages present"
  exit 0
fi

echo "install.sh: installing ${missing[*]}"
# policy-rc.d exiting 101 forbids every service start during the install. An existing one that already
# does that is left alone; otherwise ours is put in place and the previous state restored afterwards.
POLICY=/usr/sbin/policy-rc.d
BACKUP="$POLICY.mrunner-backup.$$"
policy_state=keep
if [ ! -e "$POLICY" ]; then
  policy_state=created
elif ! grep -qx 'exit 101' "$POLICY"; then
  mv -f "$POLICY" "$BACKUP"
  policy_state=replaced
fi
if [ "$policy_state" != keep ]; then
  printf '#!/bin/sh\n# written by mrunner tests/services/k8s/install.sh\nexit 101\n' > "$POLICY"
  chmod 755 "$POLICY"
fi
cleanup() {
  case "$policy_state" in
    created) rm -f "$POLICY" ;;
    replaced) mv -f "$BACKUP" "$POLICY" ;;
  esac
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# Other processes may hold the apt/dpkg locks: wait for them (DPkg::Lock::Timeout) and retry.
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
for attempt in 1 2 3; do
  if apt_get install -y --no-install-recommends "${missing[@]}"; then
    break
  fi
  if [ "$attempt" = 3 ]; then
    echo "install.sh: apt-get install failed" >&2
    exit 1
  fi
  # A stale package list is the usual reason: refresh once and retry.
  apt_get update || true
  sleep 2
done
echo "install.sh: done"
