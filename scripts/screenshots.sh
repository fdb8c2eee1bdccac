#!/usr/bin/env bash
# Screenshots of a run in the MLflow UI, for the README: its overview and its model-metrics page.
#   scripts/screenshots.sh STORE_URI RUN_ID [OUT_DIR]     e.g. sqlite:////path/to/mlflow.db 7b10ea...
# Serves the UI from this checkout's .venv on 127.0.0.1 (a free port) and shoots it with headless
# Chromium (Debian's `chromium`: apt-get install chromium). Writes OUT_DIR/mlflow_run_overview.png
# and OUT_DIR/mlflow_run_model_metrics.png (OUT_DIR defaults to docs/).
set -euo pipefail
store=${1:?store URI}; run=${2:?run id}; out=${3:-docs}
here=$(cd "$(dirname "$0")/.." && pwd)
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "no chromium on PATH: apt-get install chromium" >&2; exit 2; }
port=$("$here/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
experiment=$("$here/.venv/bin/python" -c "from mlflow.tracking import MlflowClient; print(MlflowClient('$store').get_run('$run').info.experiment_id)")
MLFLOW_DISABLE_TELEMETRY=true "$here/.venv/bin/mlflow" ui --backend-store-uri "$store" --host 127.0.0.1 --port "$port" \
  > "${TMPDIR:-/tmp}/distmeta-screenshots-ui.log" 2>&1 &
ui=$!
trap 'kill $ui 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
base="http://127.0.0.1:$port/#/experiments/$experiment/runs/$run"
mkdir -p "$out"
shoot() {  # a fresh profile each time: no state from another shot
  profile=$(mktemp -d)
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --window-size=1600,1100 --virtual-time-budget=60000 --run-all-compositor-stages-before-draw --screenshot="$2" "$1" 2> /dev/null
  rm -rf "$profile"
}
shoot "$base?workflowType=machine_learning" "$out/mlflow_run_overview.png"
shoot "$base/model-metrics?workflowType=machine_learning" "$out/mlflow_run_model_metrics.png"
echo "wrote $out/mlflow_run_overview.png and $out/mlflow_run_model_metrics.png"
