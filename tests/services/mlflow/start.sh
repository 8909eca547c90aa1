#!/usr/bin/env bash
# Start (idempotently) a real MLflow tracking server on loopback (SQLite backend store, local artifact
# folder), for the MLflow tracker's tests. Installs it in a virtualenv of its own (mlflow's server needs
# Flask, SQLAlchemy, alembic, ...: none of them belongs in mrunner's environment).
#
#   MRUNNER_SERVICES_DIR   base dir (default /tmp/mrunner-services); state in <base>/mlflow/,
#                          connection info in <base>/mlflow.json
#   MLFLOW_PORT            the port (default 5055)
#   MLFLOW_VERSION         the newest server version to install (default: the client version in uv.lock)
#
# If the server is already running and healthy, exits 0 quickly.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$SCRIPT_DIR/../../.." && pwd)"
BASE="${MRUNNER_SERVICES_DIR:-/tmp/mrunner-services}"
STATE_DIR="$BASE/mlflow"
STATE_FILE="$BASE/mlflow.json"
PORT="${MLFLOW_PORT:-5055}"
URI="http://127.0.0.1:$PORT"
log() { echo "mlflow service: $*" >&2; }

mkdir -p "$STATE_DIR"
exec 9>"$BASE/mlflow.lock"
flock 9

VENV="$STATE_DIR/venv"
healthy() { curl -fsS -m 5 "$URI/health" >/dev/null 2>&1; }
write_state() {
  cat >"$STATE_FILE.tmp" <<JSON
{
  "tracking_uri": "$URI",
  "version": "$("$VENV/bin/python" -c "import mlflow; print(mlflow.__version__)")",
  "pid": $(cat "$STATE_DIR/pid"),
  "log": "$STATE_DIR/server.log"
}
JSON
  mv "$STATE_FILE.tmp" "$STATE_FILE"
}

if [[ -f "$STATE_DIR/pid" ]] && kill -0 "$(cat "$STATE_DIR/pid")" 2>/dev/null && healthy; then
  write_state
  log "already running at $URI"
  exit 0
fi

VERSION="${MLFLOW_VERSION:-$(awk '/^name = "mlflow-skinny"$/ { getline; gsub(/[^0-9.]/, "", $0); print; exit }' "$REPO/uv.lock")}"
if ! "$VENV/bin/python" -c "import mlflow.server" 2>/dev/null; then
  log "installing mlflow $VERSION into $VENV"
  command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
  uv venv --quiet --allow-existing --python 3.11 "$VENV"
  uv pip install --quiet --python "$VENV/bin/python" "mlflow<=$VERSION"  # its newest release may wait for a part
fi

log "starting at $URI"
mkdir -p "$STATE_DIR/artifacts"
setsid "$VENV/bin/mlflow" server --host 127.0.0.1 --port "$PORT" --workers 1 \
  --backend-store-uri "sqlite:///$STATE_DIR/mlflow.db" --default-artifact-root "$STATE_DIR/artifacts" \
  </dev/null >"$STATE_DIR/server.log" 2>&1 9>&- &  # not holding the lock
echo $! >"$STATE_DIR/pid"

# Its first start creates the database's tables; on a busy machine that and the imports take minutes.
for _ in $(seq 1 600); do
  if healthy; then
    write_state
    log "running at $URI"
    exit 0
  fi
  if ! kill -0 "$(cat "$STATE_DIR/pid")" 2>/dev/null; then
    log "the server exited; its log:"
    tail -20 "$STATE_DIR/server.log" >&2
    exit 1
  fi
  sleep 1
done
log "not healthy after 600 s; its log:"
tail -20 "$STATE_DIR/server.log" >&2
exit 1
