# Shared prelude of the proof scripts that drive the real `quantum-allocation run`
# (proof_p29_allocation.sh, proof_p31_step1_allocation_shadow.sh). Source it, don't run it:
#
#   set -u
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/proof_common.sh"
#   HELPER=scripts/<the script's python helper>.py
#
# On sourcing it:
#   - changes to the repository root (relative paths below are from there);
#   - sets PYTHON (default .venv/bin/python, overridable), BIN (its directory), WORK (a fresh
#     temporary directory), PIDS (processes to stop on exit: append service pids to it);
#   - traps EXIT to kill and reap every pid in PIDS, then remove WORK;
#   - unless REDIS_URL is given (its database may be flushed by the proof!), starts its own
#     redis-server on a free loopback port, in WORK, and exports REDIS_URL for it;
#   - sets FAILED=0.
# Functions:
#   report NAME STATUS DETAIL  prints "✅ NAME: DETAIL" if STATUS is 0, else "❌ NAME: DETAIL"
#                              and counts a failure
#   check CASE                 runs "$PYTHON" "$HELPER" check CASE, reports its output and status
#   service_health CODE        reports the service's exit CODE and the error lines of
#                              $WORK/service.log
#   summary                    prints SUMMARY: PASS and exits 0, or SUMMARY: FAIL (n failed)
#                              and exits 1
# It sets no shell options itself; it works under `set -u` and under `set -euo pipefail`.

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
BIN="$(dirname "$PYTHON")"
WORK="$(mktemp -d)"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
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

check() {  # check CASE
  local detail status=0
  detail="$("$PYTHON" "$HELPER" check "$1")" || status=$?
  report "$1" "$status" "$detail"
}

service_health() {  # service_health CODE
  local errors
  errors="$(grep -c -E 'ERROR|Traceback' "$WORK/service.log")" || true
  report "service health" "$(( $1 != 0 || errors != 0 ))" \
    "exit code $1 on SIGTERM, $errors error lines in the service log"
}

summary() {
  if [ "$FAILED" -eq 0 ]; then echo "SUMMARY: PASS"; exit 0; fi
  echo "SUMMARY: FAIL ($FAILED failed)"; exit 1
}
