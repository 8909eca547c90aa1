#!/usr/bin/env bash
# Install the Debian packages needed for the loopback Slurm + sshd test cluster.
# Idempotent: a fast no-op when everything is already installed.
# Package maintainer scripts are prevented from starting services (policy-rc.d exit 101).
set -euo pipefail

PACKAGES=(
  slurmctld slurmd slurm-client munge
  slurmdbd mariadb-server
  openssh-server openssh-client
  python3 python3-venv
)

log() { printf '[slurm-install] %s\n' "$*" >&2; }

if [[ "$(id -u)" -ne 0 ]]; then
  log "must run as root"
  exit 1
fi

# One dpkg-query for all of them: start.sh runs this on every call, even when all is healthy.
declare -A installed=()
while read -r pkg status; do
  [[ "$status" == "install ok installed" ]] && installed[$pkg]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for pkg in "${PACKAGES[@]}"; do
  [[ -n "${installed[$pkg]:-}" ]] || missing+=("$pkg")
done

if [[ "${#missing[@]}" -eq 0 ]]; then
  exit 0
fi

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
if [[ -e "$POLICY" ]]; then
  POLICY_BACKUP="$(mktemp /usr/sbin/policy-rc.d.mrunner-backup.XXXXXX)"
  cp -p "$POLICY" "$POLICY_BACKUP"
fi
restore_policy() {
  if [[ -n "$POLICY_BACKUP" ]]; then
    mv -f "$POLICY_BACKUP" "$POLICY"
  else
    rm -f "$POLICY"
  fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' > "$POLICY"
chmod 0755 "$POLICY"

APT_OPTS=(-y --no-install-recommends -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# Refresh package lists if they are missing (fresh CI image) ...
if ! apt-cache show slurmctld >/dev/null 2>&1; then
  log "apt-get update (no package lists)"
  apt-get -o DPkg::Lock::Timeout=300 update -q
fi
# ... or if they are stale (install fails with 404s): update once and retry.
if ! apt-get install "${APT_OPTS[@]}" "${missing[@]}"; then
  log "install failed; apt-get update and retry"
  apt-get -o DPkg::Lock::Timeout=300 update -q
  apt-get install "${APT_OPTS[@]}" "${missing[@]}"
fi
log "done"
