#!/usr/bin/env bash
# P3.1 Step 1 proof: the p29_shadow plugin on the real `quantum-allocation run`.
# Uses REDIS_URL if given, else starts its own redis-server on a free port.
# Prints one line per case, ends with SUMMARY: PASS | SUMMARY: FAIL (n failed), exit 0/1.
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
BIN="$(dirname "$PYTHON")"
HELPER=scripts/proof_p31_step1_inject_efficiency.py
WORK="$(mktemp -d)"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${REDIS_URL:-}" ]; then
  PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
  PIDS+=($!)
  export REDIS_URL="redis://127.0.0.1:$PORT/0"
  for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

FAILED=0
report() {  # report NAME STATUS DETAIL
  if [ "$2" -eq 0 ]; then echo "✅ $1: $3"; else echo "❌ $1: $3"; FAILED=$((FAILED + 1)); fi
}

"$PYTHON" "$HELPER" setup
P29_INTERVAL_SEC=1 LOOP_INTERVAL_SEC=1 P29_METRICS_PORT=0 LOG_FORMAT=text \
  "$BIN/quantum-allocation" run 2>"$WORK/service.log" &
SERVICE=$!
PIDS+=("$SERVICE")
"$PYTHON" "$HELPER" wait

for case in high low missing low_conf stale malformed; do
  detail="$("$PYTHON" "$HELPER" check "$case")"; status=$?
  report "$case" "$status" "$detail"
done

kill -TERM "$SERVICE"; wait "$SERVICE"; code=$?
errors="$(grep -c -E 'ERROR|Traceback' "$WORK/service.log")"
report "service health" "$(( code != 0 || errors != 0 ))" \
  "exit code $code on SIGTERM, $errors error lines in the service log"

if [ "$FAILED" -eq 0 ]; then echo "SUMMARY: PASS"; exit 0; fi
echo "SUMMARY: FAIL ($FAILED failed)"; exit 1
