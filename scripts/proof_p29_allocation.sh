#!/usr/bin/env bash
# P2.9 proof: the real `quantum-allocation run` in shadow then enforce mode.
# Uses REDIS_URL if given (its database is flushed!), else starts its own redis-server on a
# free port. Prints one line per case, ends with SUMMARY: PASS | SUMMARY: FAIL (n failed).
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
BIN="$(dirname "$PYTHON")"
HELPER=scripts/proof_p29_inject.py
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
check() { detail="$("$PYTHON" "$HELPER" check "$1")"; report "$1" $? "$detail"; }

start() {  # start MODE: run the service in the background
  P29_MODE="$1" P29_INTERVAL_SEC=0.5 P29_METRICS_PORT=0 LOG_FORMAT=text \
    "$BIN/quantum-allocation" run 2>>"$WORK/service.log" &
  SERVICE=$!
  PIDS+=("$SERVICE")
}
stop() { kill -TERM "$SERVICE"; wait "$SERVICE"; }

"$PYTHON" "$HELPER" setup
start shadow
"$PYTHON" "$HELPER" wait-decisions 5
check formula
check caps
check stale_budget
check unmapped
check shadow
stop; code=$?
report "clean stop" "$code" "shadow service exit code $code on SIGTERM"

"$PYTHON" "$HELPER" setup
start enforce
"$PYTHON" "$HELPER" wait-decisions 5
check enforce

"$PYTHON" "$HELPER" stale-portfolio
sleep 1  # let any cycle in flight finish
before="$("$PYTHON" "$HELPER" xlen)"; sleep 1.5; after="$("$PYTHON" "$HELPER" xlen)"
report "stale portfolio" "$(( before != after ))" \
  "decision stream $before → $after entries over 1.5 s (cycles skipped, nothing written)"
stop; code=$?
errors="$(grep -c -E 'ERROR|Traceback' "$WORK/service.log")"
report "service health" "$(( code != 0 || errors != 0 ))" \
  "exit code $code on SIGTERM, $errors error lines in the service log"

if [ "$FAILED" -eq 0 ]; then echo "SUMMARY: PASS"; exit 0; fi
echo "SUMMARY: FAIL ($FAILED failed)"; exit 1
