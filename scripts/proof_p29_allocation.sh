#!/usr/bin/env bash
# P2.9 proof: the real `quantum-allocation run` in shadow then enforce mode.
# Uses REDIS_URL if given (its database is flushed!), else starts its own redis-server on a
# free port. Prints one line per case, ends with SUMMARY: PASS | SUMMARY: FAIL (n failed).
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib/proof_common.sh"  # cd to the root, redis, report/check
HELPER=scripts/proof_p29_inject.py

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
service_health "$code"
summary
