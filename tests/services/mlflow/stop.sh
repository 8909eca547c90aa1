#!/usr/bin/env bash
# Stop the MLflow server tests/services/mlflow/start.sh started (its database and artifacts stay).
set -euo pipefail
BASE="${MRUNNER_SERVICES_DIR:-/tmp/mrunner-services}"
PID_FILE="$BASE/mlflow/pid"
if [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  kill -- "-$(cat "$PID_FILE")"  # its process group: the server started it with setsid
fi
rm -f "$BASE/mlflow.json" "$PID_FILE"
