#!/usr/bin/env bash
# P3.1 Step 1 proof: the p29_shadow plugin on the real `quantum-allocation run`.
# Uses REDIS_URL if given, else starts its own redis-server on a free port.
# Prints one line per case, ends with SUMMARY: PASS | SUMMARY: FAIL (n failed), exit 0/1.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib/proof_common.sh"  # cd to the root, redis, report/check
HELPER=scripts/proof_p31_step1_inject_efficiency.py

"$PYTHON" "$HELPER" setup
P29_INTERVAL_SEC=1 LOOP_INTERVAL_SEC=1 P29_METRICS_PORT=0 LOG_FORMAT=text \
  "$BIN/quantum-allocation" run 2>"$WORK/service.log" &
SERVICE=$!
PIDS+=("$SERVICE")
"$PYTHON" "$HELPER" wait

for case in high low missing low_conf stale malformed; do check "$case"; done

kill -TERM "$SERVICE"; wait "$SERVICE"; code=$?
service_health "$code"
summary
