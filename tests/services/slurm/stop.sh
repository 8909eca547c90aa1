#!/usr/bin/env bash
# Stop the daemons started by start.sh (found through their pidfiles in the state dir).
#
#   stop.sh           stop sshd, slurmd, slurmctld, slurmdbd, mariadbd, munged; keep Slurm state
#                     (queued jobs survive a later start.sh), the accounting database, keys and logs.
#   stop.sh --purge   also cancel every job first, end leftover job steps and delete the
#                     state dir (with the accounting database) and slurm.json: the next start.sh
#                     starts from scratch (new keys, empty queue and accounting, job ids from 1).
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_TAG=stop
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  *)
    echo "usage: $0 [--purge]" >&2
    exit 2
    ;;
esac

if [[ "$(id -u)" -ne 0 ]]; then
  log "must run as root"
  exit 1
fi

take_lock
rm -f "$STATE_JSON"

if ((purge)) && pid_of "$SLURMCTLD_PIDFILE" /usr/sbin/slurmctld >/dev/null; then
  mapfile -t ids < <(timeout 10 squeue -h -o '%A' 2>/dev/null || true)
  if ((${#ids[@]} > 0)); then
    log "cancelling all jobs"
    timeout 20 scancel --full "${ids[@]}" >/dev/null 2>&1 || true
    for ((i = 0; i < 50; i++)); do
      [[ -z "$(timeout 10 squeue -h -t RUNNING,COMPLETING -o '%A' 2>/dev/null || true)" ]] && break
      sleep 0.2
    done
  fi
fi

stop_pidfile sshd "$SSHD_PIDFILE" /usr/sbin/sshd
stop_pidfile slurmd "$SLURMD_PIDFILE" /usr/sbin/slurmd
stop_pidfile slurmctld "$SLURMCTLD_PIDFILE" /usr/sbin/slurmctld
stop_pidfile slurmdbd "$SLURMDBD_PIDFILE" /usr/sbin/slurmdbd
stop_pidfile mariadbd "$DB_PIDFILE" "$MARIADBD"
stop_pidfile munged "$MUNGE_PIDFILE" /usr/sbin/munged

if ((purge)); then
  # Job steps (slurmstepd) outlive slurmd by design; without slurmd they would linger.
  # Only the slurmd started from this state dir runs them (one slurmd per machine: port 6818).
  for proc in /proc/[0-9]*; do
    if [[ "$(readlink "$proc/exe" 2>/dev/null || true)" == /usr/sbin/slurmstepd ]]; then
      pid="${proc#/proc/}"
      log "killing leftover job step slurmstepd (pid $pid)"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f -- "$ROOT_AUTHORIZED_KEYS" # its key is in the state dir
  if [[ -d "$STATE_DIR" ]]; then
    log "removing $STATE_DIR"
    rm -rf -- "$STATE_DIR"
  fi
fi
log "stopped"
