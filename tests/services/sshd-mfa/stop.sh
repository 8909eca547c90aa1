#!/usr/bin/env bash
# Stop the MFA and bastion sshd's of start.sh (the Slurm cluster and its sshd keep running).
set -euo pipefail
STATE_DIR="$(realpath -m -- "${MRUNNER_SERVICES_DIR:-/tmp/mrunner-services}")/sshd-mfa"
for name in mfa bastion; do
  pidfile="$STATE_DIR/$name.pid"
  if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    printf '[sshd-mfa] stopped the %s sshd\n' "$name" >&2
  fi
  rm -f "$pidfile"
done
rm -f "$(dirname "$STATE_DIR")/sshd-mfa.json"
