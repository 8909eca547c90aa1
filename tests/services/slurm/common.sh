# Shared definitions for start.sh / stop.sh (sourced, not executed).
# shellcheck shell=bash disable=SC2034

SERVICES_DIR="${MRUNNER_SERVICES_DIR:-/tmp/mrunner-services}"
# Absolute paths everywhere (slurm.conf, ssh_config and slurm.json embed them).
SERVICES_DIR="$(realpath -m -- "$SERVICES_DIR")"
STATE_DIR="$SERVICES_DIR/slurm"
STATE_JSON="$SERVICES_DIR/slurm.json"
LOCK_FILE="$SERVICES_DIR/slurm.lock"

TEST_USER=mrtest
# A second user whose association carries the job limits (MaxSubmitJobs, MaxJobs), so tests of limits never
# hold back the tests that submit as mrtest.
LIMITED_USER=mrlimited
SSH_HOST=127.0.0.1
SSH_PORT=2222
SSH_ALIAS=mrunner-test-slurm
LIMITED_ALIAS=mrunner-test-slurm-limited
# root logs in too (key only, from 127.0.0.1 only, its key in a file of its own that no other sshd reads), for
# tests of what a job running as root can do (file modes do not stop root).
ROOT_ALIAS=mrunner-test-slurm-root
ROOT_AUTHORIZED_KEYS=/root/.ssh/mrunner-test-slurm.authorized_keys
NODE_NAME=localhost
CLUSTER=mrunner-test
PARTITION=debug
# Site-like preemption: jobs on LOW_PARTITION are requeued when a job on HIGH_PARTITION needs their CPUs.
LOW_PARTITION=low
HIGH_PARTITION=high
GRACE_TIME=10
ACCOUNT=mrunner
LIMITED_ACCOUNT=limited
# A QOS mrlimited may ask for (`--qos=capped`, its default stays `normal`) whose limits bind as a site's QOS
# limits do: per user, and for the whole QOS (Grp: every user's jobs count).
CAPPED_QOS=capped
CAPPED_MAX_SUBMIT_PER_USER=8
CAPPED_MAX_JOBS_PER_USER=2
CAPPED_GRP_SUBMIT=6
GPU_COUNT=2
# Accounting: slurmdbd on 127.0.0.1:6819, its MariaDB on 127.0.0.1:3307 (not 3306: a developer's own MySQL
# keeps its port).
DBD_PORT=6819
DB_PORT=3307
DB_NAME=slurm_acct_db
DB_USER=slurm

SLURM_ETC=/etc/slurm
MUNGE_DIR="$STATE_DIR/munge"
MUNGE_PIDFILE="$MUNGE_DIR/munged.pid"
MUNGE_LOG="$MUNGE_DIR/munged.log"
MUNGE_KEY=/etc/munge/munge.key
SLURMCTLD_PIDFILE="$STATE_DIR/slurmctld.pid"
SLURMD_PIDFILE="$STATE_DIR/slurmd.pid"
SSHD_PIDFILE="$STATE_DIR/sshd.pid"
SLURMDBD_PIDFILE="$STATE_DIR/slurmdbd.pid"
DB_DIR="$STATE_DIR/mariadb"
DB_SOCKET="$DB_DIR/mysqld.sock"
DB_PIDFILE="$DB_DIR/mariadbd.pid" # mariadbd runs as mysql: its files are in its own folder
MARIADBD=/usr/sbin/mariadbd

log() { printf '[slurm-%s] %s\n' "${SCRIPT_TAG:-service}" "$*" >&2; }

# pid_of PIDFILE EXE: print the pid recorded in PIDFILE if that process is alive
# and is running EXE (guards against stale pidfiles and recycled pids).
pid_of() {
  local pidfile="$1" exe="$2" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(tr -dc '0-9' < "$pidfile")"
  [[ -n "$pid" ]] || return 1
  alive "$pid" || return 1
  [[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null || true)" == "$(readlink -f "$exe")" ]] || return 1
  printf '%s\n' "$pid"
}

# alive PID: the process exists and is not a zombie. (PID 1 on some CI/sandbox
# machines reaps orphans only every few seconds; a zombie has already exited.)
alive() {
  local state
  state="$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# stop_pidfile NAME PIDFILE EXE: SIGTERM, wait up to 10 s, then SIGKILL.
stop_pidfile() {
  local name="$1" pidfile="$2" exe="$3" pid i
  if pid="$(pid_of "$pidfile" "$exe")"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name did not exit after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$pidfile"
}

take_lock() {
  mkdir -p "$SERVICES_DIR"
  chmod 0755 "$SERVICES_DIR"
  exec 9>"$LOCK_FILE"
  if ! flock -w 600 9; then
    log "could not take $LOCK_FILE within 600 s"
    exit 1
  fi
}
