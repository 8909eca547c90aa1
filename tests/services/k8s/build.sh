#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and kubelet (Kubernetes 1.20.2) from
# Debian bookworm's `kubernetes` SOURCE package, plus Kubernetes' pause binary, and caches them OUTSIDE
# the work tree in ${MRUNNER_K8S_CACHE:-/var/cache/mrunner-test/kubernetes}/bin/.
# A fast no-op when all binaries are already cached. Cold build: ~17-20 min on 2 cores.
#
# Environment:
#   MRUNNER_K8S_CACHE            cache folder (binaries, Go build cache, source tree)
#   MRUNNER_K8S_BUILD_KUBECTL=1  also build kubectl (optional, not needed by start.sh)
#   MRUNNER_K8S_KEEP_SOURCE=1    keep the unpacked source tree after a successful build
set -euo pipefail

CACHE="${MRUNNER_K8S_CACHE:-/var/cache/mrunner-test/kubernetes}"
BIN="$CACHE/bin"
REQUIRED=(kube-apiserver kube-controller-manager kube-scheduler kubelet pause)
WANT_KUBECTL="${MRUNNER_K8S_BUILD_KUBECTL:-0}"

have_all() {
  local b
  for b in "${REQUIRED[@]}"; do [ -x "$BIN/$b" ] || return 1; done
  if [ "$WANT_KUBECTL" = 1 ]; then [ -x "$BIN/kubectl" ] || return 1; fi
  return 0
}

if have_all; then
  echo "build.sh: cached binaries present in $BIN"
  exit 0
fi

mkdir -p "$CACHE" "$BIN"
# One build at a time on this machine (concurrent start.sh runs wait here).
exec 9>"$CACHE/.build.lock"
flock 9
if have_all; then
  echo "build.sh: cached binaries present in $BIN (built by a concurrent run)"
  exit 0
fi

t0=$(date +%s)
log() { echo "build.sh [$(( $(date +%s) - t0 ))s]: $*"; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$SCRIPT_DIR/install.sh"

REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -f "$REFLECT2_SRC/reflect2.go" ] || { echo "build.sh: $REFLECT2_SRC missing (golang-github-modern-go-reflect2-dev)" >&2; exit 1; }

SRC_PARENT="$CACHE/src"
mkdir -p "$SRC_PARENT"
src_tree() { find "$SRC_PARENT" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | sort | tail -n 1; }
TREE="$(src_tree)"

if [ -z "$TREE" ] || [ ! -f "$TREE/.mrunner-unpacked" ]; then
  # `apt-get source` needs deb-src entries: add one for bookworm mirroring the existing deb source.
  if ! apt-get source --print-uris kubernetes >/dev/null 2>&1; then
    uri="$(grep -rhoE '^(URIs:|deb) +(\[[^]]*\] +)?https?://[^ ]+/debian/?( |$)' \
             /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
           | grep -oE 'https?://[^ ]+' | head -n 1 || true)"
    uri="${uri:-http://deb.debian.org/debian}"
    log "adding deb-src entry for bookworm ($uri)"
    cat > /etc/apt/sources.list.d/mrunner-deb-src.sources <<SRC
Types: deb-src
URIs: $uri
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    for attempt in 1 2 3 4 5 6; do   # another apt-get may hold the lists lock
      apt-get -o DPkg::Lock::Timeout=600 update && break
      [ "$attempt" = 6 ] && { echo "build.sh: apt-get update failed" >&2; exit 1; }
      sleep 10
    done
  fi
  log "fetching the kubernetes source package"
  rm -rf "$SRC_PARENT"
  mkdir -p "$SRC_PARENT"
  (cd "$SRC_PARENT" && apt-get source kubernetes 2>&1 | { grep -v 'Download is performed unsandboxed' || true; })
  TREE="$(src_tree)"
  [ -n "$TREE" ] || { echo "build.sh: no kubernetes-* tree after apt-get source" >&2; exit 1; }
  # Fix 1: vendored reflect2 v1.0.1 crashes under Go >= 1.18 (UnsafeMapType.UnsafeIterate fault):
  # replace it with Debian's 1.0.2 source.
  V="$TREE/vendor/github.com/modern-go/reflect2"
  [ -d "$V" ] || { echo "build.sh: $V not found" >&2; exit 1; }
  rm -rf "$V"
  mkdir -p "$V"
  cp -a "$REFLECT2_SRC/." "$V/"
  rm -f "$V/go.mod" "$V/go.sum"   # vendored packages carry no go.mod
  touch "$TREE/.mrunner-unpacked"
  log "source ready in $TREE (reflect2 replaced by $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev))"
fi

export GOCACHE="$CACHE/go-build"
export KUBE_GIT_VERSION=v1.20.2
export KUBE_GIT_TREE_STATE=archive
export KUBE_BUILD_PLATFORMS=linux/amd64
export GOFLAGS=-p=2
export CGO_ENABLED=0
export GOPROXY=off
export GO111MODULE=on
export KUBE_STATIC_OVERRIDES=kubelet
mkdir -p "$GOCACHE"

targets=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
  [ -x "$BIN/$b" ] || targets+=("$b")
done
if [ "$WANT_KUBECTL" = 1 ] && [ ! -x "$BIN/kubectl" ]; then targets+=(kubectl); fi

# Kubernetes' hack/lib/golang.sh forces GOCACHE=_output/local/go/cache inside the tree: point that at the
# persistent cache so a rebuild after the source tree was removed is warm (~10 s per binary).
mkdir -p "$TREE/_output/local/go"
if [ ! -L "$TREE/_output/local/go/cache" ]; then
  rm -rf "$TREE/_output/local/go/cache"
  ln -s "$GOCACHE" "$TREE/_output/local/go/cache"
fi

OUT="$TREE/_output/local/bin/linux/amd64"
for b in "${targets[@]}"; do
  log "make WHAT=cmd/$b"
  (cd "$TREE" && make WHAT="cmd/$b")
  [ -x "$OUT/$b" ] || { echo "build.sh: $OUT/$b not produced" >&2; exit 1; }
  cp "$OUT/$b" "$BIN/.$b.tmp"
  mv -f "$BIN/.$b.tmp" "$BIN/$b"
  log "built $BIN/$b"
done

if [ ! -x "$BIN/pause" ]; then
  PAUSE_C="$(find "$TREE/build/pause" -name pause.c | head -n 1)"
  [ -n "$PAUSE_C" ] || { echo "build.sh: pause.c not found" >&2; exit 1; }
  gcc -Os -Wall -Werror -static -DVERSION=v3.2-mrunner -o "$BIN/.pause.tmp" "$PAUSE_C"
  strip "$BIN/.pause.tmp" || true
  mv -f "$BIN/.pause.tmp" "$BIN/pause"
  log "built $BIN/pause"
fi

have_all || { echo "build.sh: binaries still missing in $BIN" >&2; exit 1; }
if [ "${MRUNNER_K8S_KEEP_SOURCE:-0}" != 1 ]; then
  rm -rf "$SRC_PARENT"
fi
log "done ($(( $(date +%s) - t0 ))s)"
