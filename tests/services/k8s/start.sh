#!/usr/bin/env bash
# Starts, all on loopback, a REAL single-node Kubernetes 1.20 cluster (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet with dockershim), a private dockerd and two image
# registries, then proves a Job really runs and writes ${MRUNNER_SERVICES_DIR:-/tmp/mrunner-services}/k8s.json.
# Idempotent: components already running are left alone. See README.md.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

now_ms() { local t="${EPOCHREALTIME/./}"; echo $(( t / 1000 )); }
T0="$(now_ms)"
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $(( d / 1000 )) $(( d % 1000 / 100 )); }
log() { printf 'start.sh [%6ss]: %s\n' "$(secs_since "$T0")" "$*"; }
die() { echo "start.sh: ERROR: $*" >&2; exit 1; }
tail_log() {
  local f="$LOGS/$1.log"
  if [ -f "$f" ]; then echo "----- last lines of $f -----" >&2; tail -n "${2:-40}" "$f" >&2; echo "-----" >&2; fi
}

# wait_for DESCRIPTION TIMEOUT_SECONDS LOGNAME COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
  local what="$1" timeout="$2" logname="$3"; shift 3
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$logname" ] && ! component_pid "$logname" >/dev/null; then
      tail_log "$logname"; die "$logname exited while waiting for $what"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      [ -n "$logname" ] && tail_log "$logname"
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 0.2
  done
}

port_in_use() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

# start_component NAME PORT COMMAND...: starts COMMAND detached (own session), pid in $RUN/NAME.pid.
start_component() {
  local name="$1" port="$2"; shift 2
  if component_pid "$name" >/dev/null; then
    log "$name already running (pid $(component_pid "$name"))"
    return 0
  fi
  if [ -n "$port" ] && port_in_use "$port"; then
    die "port $port (for $name) is already used by another process: $(ss -ltnpH "sport = :$port" | head -n 1)"
  fi
  echo "=== $(date -u +%FT%TZ) start: $*" >> "$LOGS/$name.log"
  setsid "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null 8>&- &
  echo "$!" > "$RUN/$name.pid"
  log "started $name (pid $!)"
}

mkdir -p "$SERVICES_DIR"
exec 8>>"$SERVICES_DIR/.k8s.lock"
flock 8   # one start/stop at a time

log "install + build (cached binaries in $KBIN)"
"$SCRIPT_DIR/install.sh" >/dev/null
"$SCRIPT_DIR/build.sh"

mkdir -p "$STATE" "$RUN" "$LOGS" "$PKI" "$DOCKER_EXEC_ROOT" "$KUBELET_ROOT" "$STATE/docker-config" \
         "$STATE/bin" "$DOCKER_DATA_ROOT"
chmod 700 "$STATE" "$PKI"
[ "${#DOCKER_SOCK}" -lt 100 ] || die "docker socket path too long for a unix socket: $DOCKER_SOCK (use a shorter MRUNNER_SERVICES_DIR)"

for tool in docker dockerd docker-registry etcd htpasswd jq openssl curl ss setsid flock; do
  command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
RUNC="$(command -v runc || true)"
[ -n "$RUNC" ] || RUNC=/usr/sbin/runc
[ -x "$RUNC" ] || die "runc not found"

# Pre-flight: the ports of every component that is not ours-and-running must be free (one cluster per
# machine), and no other dockerd may use the same data root.
for pair in "registry:$REGISTRY_PORT" "registry-auth:$AUTH_REGISTRY_PORT" "etcd:$ETCD_PORT" "etcd:$ETCD_PEER_PORT" \
            "kube-apiserver:$API_PORT" "kube-controller-manager:$CM_PORT" "kube-scheduler:$SCHED_PORT" \
            "kubelet:$KUBELET_PORT" "kubelet:$KUBELET_HEALTHZ_PORT"; do
  if ! component_pid "${pair%%:*}" >/dev/null && port_in_use "${pair##*:}"; then
    die "port ${pair##*:} (for ${pair%%:*}) is used by another process: $(ss -ltnpH "sport = :${pair##*:}" | head -n 1)
  (another cluster from a different MRUNNER_SERVICES_DIR? stop it with its stop.sh)"
  fi
done
if ! component_pid dockerd >/dev/null; then
  other="$(ps -eo pid=,args= | awk -v r="--data-root $DOCKER_DATA_ROOT " '$2 ~ /dockerd$/ && index($0 " ", r) {print $1}')"
  [ -z "$other" ] || die "another dockerd (pid $other) already uses the data root $DOCKER_DATA_ROOT"
fi

# ---------------------------------------------------------------- node name (fix 3)
# The kubelet refuses --node-ip=127.0.0.1; instead the node is named after a host name that resolves
# to 127.0.0.1 and the apiserver reaches the kubelet via --kubelet-preferred-address-types=Hostname.
resolves_to_loopback() { [ "$(getent ahostsv4 "$1" 2>/dev/null | awk 'NR==1{print $1}')" = 127.0.0.1 ]; }
if [ -s "$STATE/node-name" ]; then
  NODE_NAME="$(cat "$STATE/node-name")"
else
  NODE_NAME="${MRUNNER_K8S_NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}"
  if ! [[ "$NODE_NAME" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ ]] || \
     { getent ahostsv4 "$NODE_NAME" >/dev/null 2>&1 && ! resolves_to_loopback "$NODE_NAME"; }; then
    NODE_NAME=mrunner-k8s-node   # the host name is unusable or resolves elsewhere
  fi
  echo "$NODE_NAME" > "$STATE/node-name"
fi
if ! resolves_to_loopback "$NODE_NAME"; then
  log "adding '127.0.0.1 $NODE_NAME' to /etc/hosts"
  printf '127.0.0.1 %s # added by mrunner tests/services/k8s/start.sh\n' "$NODE_NAME" >> /etc/hosts
  resolves_to_loopback "$NODE_NAME" || die "$NODE_NAME does not resolve to 127.0.0.1 even after editing /etc/hosts"
fi

# ---------------------------------------------------------------- record host state the kubelet changes
if ! component_pid kubelet >/dev/null; then
  if [ ! -s "$STATE/sysctl.orig" ]; then
    for s in "${KUBELET_SYSCTLS[@]}"; do
      printf '%s=%s\n' "$s" "$(sysctl -n "$s")"
    done > "$STATE/sysctl.orig"
  fi
  for p in "${HOST_PATHS[@]}"; do
    marker="$STATE/created$(echo "$p" | tr '/' '_')"
    if [ ! -e "$p" ] && [ ! -e "$marker.no" ]; then touch "$marker"; elif [ ! -e "$marker" ]; then touch "$marker.no"; fi
  done
fi

# ---------------------------------------------------------------- secrets + PKI (once per state dir)
gen_token() { openssl rand -hex 24; }
for t in admin node controller-manager scheduler; do
  [ -s "$PKI/$t.token" ] || { gen_token > "$PKI/$t.token"; chmod 600 "$PKI/$t.token"; }
done
ADMIN_TOKEN="$(cat "$PKI/admin.token")"
if [ ! -s "$PKI/tokens.csv" ]; then
  {
    printf '%s,mrunner-admin,mrunner-admin,"system:masters"\n' "$ADMIN_TOKEN"
    printf '%s,system:node:%s,node-%s,"system:nodes"\n' "$(cat "$PKI/node.token")" "$NODE_NAME" "$NODE_NAME"
    # Without --use-service-account-credentials every controller runs as this user: give it full rights.
    printf '%s,system:kube-controller-manager,kube-controller-manager,"system:masters"\n' "$(cat "$PKI/controller-manager.token")"
    printf '%s,system:kube-scheduler,kube-scheduler\n' "$(cat "$PKI/scheduler.token")"
  } > "$PKI/tokens.csv"
  chmod 600 "$PKI/tokens.csv"
fi
if [ ! -s "$PKI/apiserver.crt" ]; then
  log "creating CA, apiserver certificate and service-account key"
  openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 -subj "/CN=mrunner-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  openssl req -new -nodes -newkey rsa:2048 -subj "/CN=kube-apiserver" \
    -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.csr" 2>/dev/null
  cat > "$PKI/apiserver.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EXT
  openssl x509 -req -sha256 -days 3650 -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -extfile "$PKI/apiserver.ext" -out "$PKI/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
if [ ! -s "$STATE/registry-password" ]; then
  openssl rand -hex 16 > "$STATE/registry-password"
  chmod 600 "$STATE/registry-password"
fi
if [ ! -s "$STATE/registry-htpasswd" ]; then
  htpasswd -Bbn "$REGISTRY_USER" "$(cat "$STATE/registry-password")" > "$STATE/registry-htpasswd"
fi

write_kubeconfig() {  # FILE USER TOKEN
  local ca
  ca="$(base64 -w0 < "$PKI/ca.crt")"
  cat > "$1.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $KUBE_CONTEXT
  cluster:
    server: $API_URL
    certificate-authority-data: $ca
users:
- name: $2
  user:
    token: $3
contexts:
- name: $KUBE_CONTEXT
  context:
    cluster: $KUBE_CONTEXT
    user: $2
current-context: $KUBE_CONTEXT
KC
  chmod 600 "$1.tmp"
  mv -f "$1.tmp" "$1"
}
write_kubeconfig "$STATE/admin.kubeconfig" mrunner-admin "$ADMIN_TOKEN"
write_kubeconfig "$STATE/kubelet.kubeconfig" "system:node:$NODE_NAME" "$(cat "$PKI/node.token")"
write_kubeconfig "$STATE/controller-manager.kubeconfig" system:kube-controller-manager "$(cat "$PKI/controller-manager.token")"
write_kubeconfig "$STATE/scheduler.kubeconfig" system:kube-scheduler "$(cat "$PKI/scheduler.token")"

# ---------------------------------------------------------------- 1. private dockerd
# Fix 2: root in this VM lacks CAP_SYS_RESOURCE, so runc fails on the negative oom_score_adj the
# kubelet gives pod sandboxes ("can't get final child's PID from pipe: EOF"). This wrapper, registered
# as dockerd's default runtime, clamps negative oomScoreAdj values to 0 and then execs runc.
cat > "$STATE/bin/runc-wrapper.tmp" <<WRAP
#!/bin/sh
# runc wrapper written by mrunner tests/services/k8s/start.sh: clamp negative oomScoreAdj, exec runc.
clamp() {
  # \$1: JSON file, \$2: jq path of the oomScoreAdj field
  adj=\$(/usr/bin/jq "\$2 // 0" "\$1" 2>/dev/null) || return 0
  case "\$adj" in -*) /usr/bin/jq -c "\$2 = 0" "\$1" > "\$1.mrunner-tmp" && mv -f "\$1.mrunner-tmp" "\$1" ;; esac
}
prev=""
for a in "\$@"; do
  case "\$prev" in
    --bundle|-b) [ -f "\$a/config.json" ] && clamp "\$a/config.json" .process.oomScoreAdj ;;
    --process|-p) [ -f "\$a" ] && clamp "\$a" .oomScoreAdj ;;
  esac
  case "\$a" in
    --bundle=*) b="\${a#--bundle=}"; [ -f "\$b/config.json" ] && clamp "\$b/config.json" .process.oomScoreAdj ;;
    --process=*) clamp "\${a#--process=}" .oomScoreAdj ;;
  esac
  prev="\$a"
done
exec $RUNC "\$@"
WRAP
chmod 755 "$STATE/bin/runc-wrapper.tmp"
mv -f "$STATE/bin/runc-wrapper.tmp" "$STATE/bin/runc-wrapper"

if ! component_pid dockerd >/dev/null; then
  [ -S "$DOCKER_SOCK" ] && rm -f "$DOCKER_SOCK"
  # dockerd writes its own pidfile; a pre-written one would make it refuse to start.
  rm -f "$RUN/dockerd.pid"
  echo "=== $(date -u +%FT%TZ) start dockerd" >> "$LOGS/dockerd.log"
  setsid dockerd \
    --data-root "$DOCKER_DATA_ROOT" --exec-root "$DOCKER_EXEC_ROOT" --pidfile "$RUN/dockerd.pid" \
    -H "$DOCKER_HOST_URL" --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --insecure-registry "$REGISTRY" --insecure-registry "$AUTH_REGISTRY" \
    --add-runtime "mrunner-runc=$STATE/bin/runc-wrapper" --default-runtime=mrunner-runc \
    --exec-opt native.cgroupdriver=cgroupfs --log-driver=json-file \
    >> "$LOGS/dockerd.log" 2>&1 < /dev/null 8>&- &
  dockerd_child=$!
  deadline=$(( $(date +%s) + 60 ))
  until docker_cli version >/dev/null 2>&1; do
    if ! kill -0 "$dockerd_child" 2>/dev/null; then tail_log dockerd; die "dockerd exited"; fi
    [ "$(date +%s)" -lt "$deadline" ] || { tail_log dockerd; die "dockerd not ready after 60s"; }
    sleep 0.1
  done
  [ -s "$RUN/dockerd.pid" ] || echo "$dockerd_child" > "$RUN/dockerd.pid"
  log "dockerd ready on $DOCKER_HOST_URL (data root $DOCKER_DATA_ROOT)"
else
  wait_for "dockerd" 30 dockerd docker_cli version
  log "dockerd already running"
fi

# ---------------------------------------------------------------- 2. registries
write_registry_config() {  # NAME PORT [htpasswd]
  local dir="$STATE/$1"
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: info, formatter: text}"
    echo "storage:"
    echo "  filesystem: {rootdirectory: \"$dir/data\"}"
    echo "  delete: {enabled: true}"
    echo "http:"
    echo "  addr: 127.0.0.1:$2"
    echo "  secret: $(openssl rand -hex 16)"
    if [ "${3:-}" = htpasswd ]; then
      echo "auth:"
      echo "  htpasswd: {realm: mrunner-test, path: \"$STATE/registry-htpasswd\"}"
    fi
  } > "$dir/config.yml"
}
if ! component_pid registry >/dev/null; then
  write_registry_config registry "$REGISTRY_PORT"
  start_component registry "$REGISTRY_PORT" docker-registry serve "$STATE/registry/config.yml"
fi
if ! component_pid registry-auth >/dev/null; then
  write_registry_config registry-auth "$AUTH_REGISTRY_PORT" htpasswd
  start_component registry-auth "$AUTH_REGISTRY_PORT" docker-registry serve "$STATE/registry-auth/config.yml"
fi
http_code() { curl -s -o /dev/null -w '%{http_code}' "$@" || true; }
registry_up() { [ "$(http_code "http://$REGISTRY/v2/")" = 200 ]; }
wait_for "registry on $REGISTRY" 30 registry registry_up
registry_auth_up() { [ "$(http_code "http://$AUTH_REGISTRY/v2/")" = 401 ] && \
  [ "$(http_code -u "$REGISTRY_USER:$(cat "$STATE/registry-password")" "http://$AUTH_REGISTRY/v2/")" = 200 ]; }
wait_for "auth registry on $AUTH_REGISTRY" 30 registry-auth registry_auth_up
log "registries ready: $REGISTRY (anonymous), $AUTH_REGISTRY (htpasswd user $REGISTRY_USER)"

# ---------------------------------------------------------------- 3. images (made locally, no internet)
# Python base image: the host's Debian python3 (+pip, venv, wheels) with its shared libraries and
# busybox-static, imported as a single-layer image. Re-imported only when its inputs change.
PY_PKGS=()
for p in python3 python3-minimal python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib \
         libpython3-stdlib python3-venv python3.11-venv python3-pip python3-pip-whl python3-setuptools-whl \
         python3-setuptools python3-wheel python3-pkg-resources python3-distutils python3-lib2to3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && PY_PKGS+=("$p")
done
ROOTFS_VERSION=6   # bump when the recipe below changes
base_hash="$( { echo "$ROOTFS_VERSION"; dpkg-query -W -f='${Package}=${Version}\n' "${PY_PKGS[@]}" busybox-static libc6 libssl3 libffi8 zlib1g libgcc-s1 libstdc++6 libcrypt1; } | sha256sum | cut -c1-16)"
image_label() { docker_cli image inspect -f "{{ index .Config.Labels \"org.mrunner.test.recipe\" }}" "$1" 2>/dev/null || true; }

build_python_rootfs() {
  local root="$1" f lib
  mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,usr/local/lib/python3.11/dist-packages,etc/ssl/certs,tmp,var/tmp,root,home,proc,sys,dev,run,work}
  ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  # Files of the Debian python packages (not the whole dist-packages folder: the host has extra packages).
  dpkg -L "${PY_PKGS[@]}" 2>/dev/null | sort -u | while IFS= read -r f; do
    case "$f" in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*|/usr/share/doc-base/*) continue ;; esac
    if [ -L "$f" ] || [ -f "$f" ]; then printf '%s\n' "${f#/}"; fi
  done > "$root.files"
  tar -C / --no-recursion -cf - -T "$root.files" | tar -C "$root" -xf -
  rm -f "$root.files"
  # Debian marks the system python "externally managed" (PEP 668): in an image, pip install must just work.
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  # Shared libraries of python and of every extension module (ldd lists the transitive closure).
  find "$root/usr" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) -print0 |
    { xargs -0 ldd 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u |
    while IFS= read -r lib; do
      [ -e "$root$lib" ] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  # Every library manylinux wheels may link against (glibc's whole set, libgcc_s, libstdc++, libcrypt):
  # Rust and C++ extensions such as rpds, numpy or torch need more of them than python itself does.
  dpkg -L libc6 libgcc-s1 libstdc++6 libcrypt1 2>/dev/null | grep -E '/lib[^/]*\.so(\.[0-9.]+)?$' | sort -u |
    while IFS= read -r lib; do
      { [ -e "$root$lib" ] || [ ! -e "$lib" ]; } && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  # ld.so also under its canonical name; some binaries use /lib64/ld-linux-x86-64.so.2.
  if [ ! -e "$root/usr/lib64/ld-linux-x86-64.so.2" ]; then
    cp -L /lib64/ld-linux-x86-64.so.2 "$root/usr/lib64/ld-linux-x86-64.so.2"
  fi
  # busybox-static provides /bin/sh and the usual tools.
  cp "$(command -v busybox)" "$root/usr/bin/busybox"
  "$root/usr/bin/busybox" --list-full | while IFS= read -r f; do
    f="${f#/}"
    case "$f" in bin/*) f="usr/$f" ;; sbin/*) f="usr/$f" ;; esac
    [ -e "$root/$f" ] || [ -L "$root/$f" ] || ln -s /usr/bin/busybox "$root/$f"
  done
  ln -sf python3 "$root/usr/bin/python"
  [ -e "$root/usr/bin/pip" ] || ln -s pip3 "$root/usr/bin/pip"
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
  printf 'PRETTY_NAME="mrunner-test python (Debian 12 python3 + busybox)"\nID=debian\nVERSION_ID="12"\n' > "$root/etc/os-release"
  touch "$root/etc/hosts" "$root/etc/resolv.conf" "$root/etc/hostname"
}

import_image() {  # ROOTFS TAG [--change ...]...
  local root="$1" tag="$2"; shift 2
  tar --numeric-owner -C "$root" -cf - . | docker_cli import "$@" \
    --change "LABEL org.mrunner.test.recipe=$base_hash" - "$tag" >/dev/null
}

if [ "$(image_label "$BASE_IMAGE")" != "$base_hash" ]; then
  log "building the python base image $BASE_IMAGE"
  rootfs="$STATE/rootfs-python"
  rm -rf "$rootfs"
  build_python_rootfs "$rootfs"
  import_image "$rootfs" "$BASE_IMAGE" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
    --change 'ENV PIP_ROOT_USER_ACTION=ignore' --change 'ENV PIP_NO_INPUT=1' \
    --change 'WORKDIR /' --change 'CMD ["python3"]'
  rm -rf "$rootfs"
  docker_cli run --rm --network none "$BASE_IMAGE" python3 -c 'import ssl, ctypes, sqlite3, venv, pip, zlib, lzma, bz2, json' \
    || die "the python base image is broken"
  log "python base image ready"
fi
if [ "$(image_label "$PAUSE_IMAGE")" != "$base_hash" ]; then
  rootfs="$STATE/rootfs-pause"
  rm -rf "$rootfs"; mkdir -p "$rootfs"
  cp "$KBIN/pause" "$rootfs/pause"
  import_image "$rootfs" "$PAUSE_IMAGE" --change 'ENTRYPOINT ["/pause"]'
  rm -rf "$rootfs"
  log "pause image ready"
fi
for img in "$BASE_IMAGE" "$PAUSE_IMAGE"; do
  repo="${img#"$REGISTRY"/}"; ref="${repo##*:}"; repo="${repo%:*}"
  id="$(docker_cli image inspect -f '{{.Id}}' "$img")"
  marker="$STATE/registry/pushed-$(echo "$repo-$ref" | tr '/:' '__')"
  if [ "$(cat "$marker" 2>/dev/null || true)" != "$id" ] || \
     [ "$(http_code -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$REGISTRY/v2/$repo/manifests/$ref")" != 200 ]; then
    docker_cli push "$img" >/dev/null || die "push of $img failed"
    echo "$id" > "$marker"
    log "pushed $img"
  fi
done

# ---------------------------------------------------------------- 4. etcd + control plane + kubelet
start_component etcd "$ETCD_PORT" etcd --name mrunner-test --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "mrunner-test=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
  --snapshot-count 10000 --quota-backend-bytes 2147483648
wait_for "etcd on 127.0.0.1:$ETCD_PORT" 60 etcd sh -c "curl -fsS http://127.0.0.1:$ETCD_PORT/health | grep -q true"

start_component kube-apiserver "$API_PORT" "$KBIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --token-auth-file "$PKI/tokens.csv" --anonymous-auth=false \
  --authorization-mode Node,RBAC \
  --disable-admission-plugins ServiceAccount \
  --endpoint-reconciler-type none \
  --kubelet-preferred-address-types Hostname,InternalIP \
  --service-cluster-ip-range 10.96.0.0/16 \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --api-audiences https://kubernetes.default.svc.cluster.local \
  --allow-privileged=true --profiling=false --event-ttl 1h --v 1
api_ready() { [ "$(curl -sS --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$API_URL/readyz" 2>/dev/null)" = ok ]; }
wait_for "kube-apiserver on $API_URL" 90 kube-apiserver api_ready
log "kube-apiserver ready"

start_component kube-controller-manager "$CM_PORT" "$KBIN/kube-controller-manager" \
  --kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$CM_PORT" --port 0 \
  --leader-elect=false --use-service-account-credentials=false \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-name mrunner-test \
  --enable-hostpath-provisioner=true \
  --node-monitor-grace-period 40s --profiling=false --v 1
start_component kube-scheduler "$SCHED_PORT" "$KBIN/kube-scheduler" \
  --kubeconfig "$STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --port 0 \
  --leader-elect=false --profiling=false --v 1

# Each pod in its own network namespace, as on a user's cluster: the CNI bridge plugin puts the pod's
# veth on the bridge $CNI_BRIDGE and host-local gives it an address of $POD_SUBNET (dockershim brings up
# the pod's lo itself). No gateway, no masquerade, no route: the bridge carries no address, IP forwarding
# and iptables stay untouched, so a pod reaches nothing but itself and the other pods. Without a network
# plugin dockershim finds no pod address and kills every non-hostNetwork pod a second after it starts.
if pid="$(component_pid kubelet)" && ! tr '\0' '\n' < "/proc/$pid/cmdline" | grep -qx -- "$CNI_CONF_DIR"; then
  die "the running kubelet (pid $pid) has no CNI network plugin (started by an older start.sh): run stop.sh first"
fi
mkdir -p "$CNI_CONF_DIR" "$CNI_DIR/cache" "$CNI_DIR/networks"
for plugin in bridge host-local loopback; do
  [ -x "$CNI_BIN_DIR/$plugin" ] || die "CNI plugin $CNI_BIN_DIR/$plugin missing (Debian package containernetworking-plugins)"
done
jq -n --arg bridge "$CNI_BRIDGE" --arg subnet "$POD_SUBNET" --arg leases "$CNI_DIR/networks" '{
  cniVersion: "0.4.0", name: "mrunner-test",
  plugins: [{type: "bridge", bridge: $bridge, isGateway: false, isDefaultGateway: false, ipMasq: false,
             hairpinMode: false, promiscMode: false,
             ipam: {type: "host-local", ranges: [[{subnet: $subnet}]], dataDir: $leases}}]}' \
  > "$CNI_CONF_DIR/10-mrunner-test.conflist.tmp"
mv -f "$CNI_CONF_DIR/10-mrunner-test.conflist.tmp" "$CNI_CONF_DIR/10-mrunner-test.conflist"
# The bridge is made here rather than by the plugin so that it gets no IPv6 link-local address either:
# then the host has no address at all on the pods' link.
ip link show "$CNI_BRIDGE" >/dev/null 2>&1 || ip link add "$CNI_BRIDGE" type bridge || die "could not create the bridge $CNI_BRIDGE"
if [ -e "/proc/sys/net/ipv6/conf/$CNI_BRIDGE/disable_ipv6" ]; then
  echo 1 > "/proc/sys/net/ipv6/conf/$CNI_BRIDGE/disable_ipv6"
fi
ip link set "$CNI_BRIDGE" up

mkdir -p "$KUBELET_ROOT" "$STATE/dockershim" "$STATE/volume-plugins"
start_component kubelet "$KUBELET_PORT" "$KBIN/kubelet" \
  --kubeconfig "$STATE/kubelet.kubeconfig" \
  --hostname-override "$NODE_NAME" \
  --address 127.0.0.1 --port "$KUBELET_PORT" --read-only-port 0 \
  --healthz-bind-address 127.0.0.1 --healthz-port "$KUBELET_HEALTHZ_PORT" \
  --container-runtime docker --docker-endpoint "$DOCKER_HOST_URL" \
  --pod-infra-container-image "$PAUSE_IMAGE" \
  --root-dir "$KUBELET_ROOT" --cert-dir "$STATE/kubelet-pki" \
  --experimental-dockershim-root-directory "$STATE/dockershim" \
  --volume-plugin-dir "$STATE/volume-plugins" \
  --network-plugin cni --cni-bin-dir "$CNI_BIN_DIR" --cni-conf-dir "$CNI_CONF_DIR" --cni-cache-dir "$CNI_DIR/cache" \
  --cgroup-driver cgroupfs --fail-swap-on=false \
  --node-status-update-frequency 1s \
  --make-iptables-util-chains=false \
  --image-gc-high-threshold 100 --image-gc-low-threshold 99 \
  --eviction-hard 'memory.available<100Mi,nodefs.available<1%,imagefs.available<1%' \
  --sync-frequency 10s --anonymous-auth=true --authorization-mode AlwaysAllow --oom-score-adj 0 \
  --v 1

# ---------------------------------------------------------------- helpers for the API (curl, admin token)
# kapi METHOD PATH [JSON-BODY]: prints the body, returns 0 on 2xx, 2 on 409 (exists), 1 otherwise.
# PATCH bodies are JSON merge patches.
kapi() {
  local method="$1" path="$2" body="${3:-}" out code ctype=application/json
  [ "$method" = PATCH ] && ctype=application/merge-patch+json
  out="$(mktemp)"
  if [ -n "$body" ]; then
    code="$(curl -sS -o "$out" -w '%{http_code}' --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
      -H "Content-Type: $ctype" -X "$method" --data-binary "$body" "$API_URL$path" || echo 000)"
  else
    code="$(curl -sS -o "$out" -w '%{http_code}' --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
      -X "$method" "$API_URL$path" || echo 000)"
  fi
  cat "$out"; rm -f "$out"
  case "$code" in 2??) return 0 ;; 409) return 2 ;; *) return 1 ;; esac
}
kcreate() {  # PATH JSON: create, ignore "already exists"
  local rc=0
  kapi POST "$1" "$2" >/dev/null || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 2 ] || { kapi POST "$1" "$2" >&2 || true; die "could not create object at $1"; }
}

wait_for "scheduler healthz" 60 kube-scheduler sh -c "curl -fsSk https://127.0.0.1:$SCHED_PORT/healthz | grep -q ok"
wait_for "controller-manager healthz" 60 kube-controller-manager sh -c "curl -fsSk https://127.0.0.1:$CM_PORT/healthz | grep -q ok"
wait_for "kubelet healthz" 60 kubelet sh -c "curl -fsS http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz | grep -q ok"
node_ready() {
  kapi GET "/api/v1/nodes/$NODE_NAME" | jq -e '.status.conditions[] | select(.type=="Ready") | .status == "True"' | grep -q true
}
wait_for "node $NODE_NAME Ready" 120 kubelet node_ready
log "node $NODE_NAME Ready"

# ---------------------------------------------------------------- 5. storage
# StorageClass mrunner-test (the default class): the in-tree hostPath provisioner of the controller
# manager (--enable-hostpath-provisioner, development-only, fine on one node) creates a volume under
# /tmp/hostpath_pv/<uuid> for every claim (any access mode) and deletes it with the claim.
# Besides, a few static hostPath PVs of the same class (RWO+ROX+RWX, reclaim policy Retain, directories
# under the state dir) exist for tests that want pre-made volumes; the binder uses them first. A
# Released one is wiped and made Available again by the next start.sh (hostPath "Recycle" is racy in 1.20).
kcreate /apis/storage.k8s.io/v1/storageclasses "$(jq -n --arg n "$STORAGE_CLASS" '{
  apiVersion: "storage.k8s.io/v1", kind: "StorageClass",
  metadata: {name: $n, annotations: {"storageclass.kubernetes.io/is-default-class": "true"}},
  provisioner: "kubernetes.io/host-path", reclaimPolicy: "Delete", volumeBindingMode: "Immediate"}')"
STATIC_PVS="${MRUNNER_K8S_STATIC_PVS:-2}"
for i in $(seq 0 $(( STATIC_PVS - 1 ))); do
  pv_name="$STORAGE_CLASS-pv-$i"
  pv_dir="$STATE/volumes/pv-$i"
  mkdir -p "$pv_dir"
  if pv_json="$(kapi GET "/api/v1/persistentvolumes/$pv_name")"; then
    phase="$(jq -r '.status.phase' <<<"$pv_json")"
    if [ "$phase" = Released ] || [ "$phase" = Failed ]; then
      find "$pv_dir" -mindepth 1 -delete
      kapi PATCH "/api/v1/persistentvolumes/$pv_name" \
        '{"spec": {"claimRef": null, "persistentVolumeReclaimPolicy": "Retain"}}' >/dev/null \
        || die "could not make $pv_name Available again"
      log "static PV $pv_name was $phase: wiped and made Available"
    fi
  else
    kcreate /api/v1/persistentvolumes "$(jq -n --arg n "$pv_name" --arg sc "$STORAGE_CLASS" --arg p "$pv_dir" '{
      apiVersion: "v1", kind: "PersistentVolume",
      metadata: {name: $n, labels: {"mrunner-test/static": "true"}},
      spec: {capacity: {storage: "100Gi"}, accessModes: ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"],
             persistentVolumeReclaimPolicy: "Retain", storageClassName: $sc,
             hostPath: {path: $p, type: "DirectoryOrCreate"}}}')"
  fi
done
log "storage class $STORAGE_CLASS (hostPath provisioner) + $STATIC_PVS static hostPath PVs"

# ---------------------------------------------------------------- 6. prove a Job really runs
# In a network namespace of its own (no hostNetwork): it prints the interfaces it sees, lo and the CNI's eth0.
SMOKE="mrunner-smoke-$(openssl rand -hex 3)"
SMOKE_CODE="print(' '.join(sorted(line.split(':')[0].strip() for line in open('/proc/net/dev').readlines()[2:])))"
kcreate /apis/batch/v1/namespaces/default/jobs "$(jq -n --arg n "$SMOKE" --arg img "$BASE_IMAGE" --arg code "$SMOKE_CODE" '{
  apiVersion: "batch/v1", kind: "Job", metadata: {name: $n},
  spec: {backoffLimit: 0, template: {spec: {restartPolicy: "Never",
    containers: [{name: "main", image: $img, imagePullPolicy: "IfNotPresent",
                  command: ["python3", "-c", $code]}]}}}}')"
job_state() {
  kapi GET "/apis/batch/v1/namespaces/default/jobs/$SMOKE" | jq -r '[.status.conditions[]? | select(.status=="True") | .type] | join(",")'
}
job_finished() { case "$(job_state)" in *Complete*|*Failed*) return 0 ;; *) return 1 ;; esac; }
js="$(now_ms)"
wait_for "smoke Job $SMOKE to finish" 120 kubelet job_finished
job_secs="$(secs_since "$js")"
if [ "$(job_state)" != Complete ]; then
  kapi GET "/api/v1/namespaces/default/pods?labelSelector=job-name%3D$SMOKE" | jq '.items[].status' >&2 || true
  tail_log kubelet
  die "smoke Job $SMOKE did not complete: $(job_state)"
fi
pod="$(kapi GET "/api/v1/namespaces/default/pods?labelSelector=job-name%3D$SMOKE" | jq -r '.items[0].metadata.name')"
out="$(kapi GET "/api/v1/namespaces/default/pods/$pod/log" || true)"
[ "$out" = "eth0 lo" ] || { tail_log kubelet; die "smoke Job pod log was '$out', expected 'eth0 lo' (the pod's own network namespace; apiserver -> kubelet logs path broken?)"; }
kapi DELETE "/apis/batch/v1/namespaces/default/jobs/$SMOKE" '{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}' >/dev/null || true
log "smoke Job $SMOKE completed in ${job_secs}s in its own network namespace (pod log '$out' read back through the API)"

# ---------------------------------------------------------------- state file (the contract for tests)
jq -n \
  --arg kubeconfig "$STATE/admin.kubeconfig" --arg ctx "$KUBE_CONTEXT" --arg dh "$DOCKER_HOST_URL" \
  --arg reg "$REGISTRY" --arg areg "$AUTH_REGISTRY" --arg user "$REGISTRY_USER" \
  --arg pwf "$STATE/registry-password" --arg img "$BASE_IMAGE" --arg sc "$STORAGE_CLASS" \
  --arg node "$NODE_NAME" --arg api "$API_URL" --arg ca "$PKI/ca.crt" --arg tok "$PKI/admin.token" \
  --arg pause "$PAUSE_IMAGE" --arg state "$STATE" --argjson npv "$STATIC_PVS" '{
    kubeconfig: $kubeconfig, kube_context: $ctx, docker_host: $dh,
    registry: $reg, auth_registry: $areg, registry_username: $user, registry_password_file: $pwf,
    base_image: $img, storage_class: $sc, node_name: $node,
    api_server: $api, ca_file: $ca, token_file: $tok, kubernetes_version: "v1.20.2",
    pause_image: $pause, static_pvs: [range(0; $npv) | "\($sc)-pv-\(.)"], state_dir: $state}' \
  > "$STATE_FILE.tmp"
mv -f "$STATE_FILE.tmp" "$STATE_FILE"
log "ready; wrote $STATE_FILE"
