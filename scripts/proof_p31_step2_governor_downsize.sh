#!/usr/bin/env bash
# Proof of P3.1 Step 2 (governor downsize hint), against a real redis-server and the real
# `quantum-governor run`. One line per case, then SUMMARY: PASS or SUMMARY: FAIL (n failed).
#
# REDIS_URL: use this Redis instead of starting one (the proof writes only its own plan ids
#            and efficiency keys of synthetic symbols, and deletes those keys at the end).
# VENV:      the virtualenv holding quantum-governor (default .venv in the repository).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PY="$VENV/bin/python"
GOVERNOR="$VENV/bin/quantum-governor"
HELPER="$ROOT/scripts/proof_p31_step2_inject_plan.py"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/proof-p31-step2.XXXXXX")"
REDIS_PID=""
GOVERNOR_PID=""
RUN="$(date +%s)$$"
SYMBOLS=()

cleanup() {
    if [ -n "$GOVERNOR_PID" ] && kill -0 "$GOVERNOR_PID" 2>/dev/null; then
        kill -TERM "$GOVERNOR_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$GOVERNOR_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$GOVERNOR_PID" 2>/dev/null
    fi
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
    elif [ "${#SYMBOLS[@]}" -gt 0 ]; then
        "$PY" "$HELPER" cleanup "${SYMBOLS[@]}" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "P3.1 Step 2 proof: governor downsize hint"
if [ ! -x "$GOVERNOR" ]; then
    echo "❌ setup: $GOVERNOR not found (set VENV)"
    echo "SUMMARY: FAIL (1 failed)"
    exit 1
fi

if [ -z "${REDIS_URL:-}" ]; then
    REDIS_PORT="$(free_port)"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    for _ in $(seq 100); do
        "$PY" -c 'import os, redis; redis.Redis.from_url(os.environ["REDIS_URL"]).ping()' \
            2>/dev/null && break
        sleep 0.1
    done
    echo "   redis-server pid $REDIS_PID on port $REDIS_PORT"
fi

METRICS_PORT="$(free_port)"
METRICS_URL="http://127.0.0.1:$METRICS_PORT/metrics"
GOVERNOR_METRICS_PORT="$METRICS_PORT" METRICS_ADDR=127.0.0.1 GOVERNOR_CONSUMER="proof-$RUN" \
    QUANTUM_DISABLE_PLUGINS="" LOG_FORMAT=text "$GOVERNOR" run >"$WORK/governor.log" 2>&1 &
GOVERNOR_PID=$!
for _ in $(seq 100); do
    "$PY" -c "import urllib.request; urllib.request.urlopen('$METRICS_URL', timeout=1)" \
        2>/dev/null && break
    kill -0 "$GOVERNOR_PID" 2>/dev/null || break
    sleep 0.1
done
echo "   quantum-governor run pid $GOVERNOR_PID, metrics $METRICS_URL"

FAILED=0
check() {
    "$PY" "$HELPER" "$@" || FAILED=$((FAILED + 1))
}
case_() {
    local name="$1" tag="$2" symbol="P31$2$RUN"
    shift 2
    symbol="${symbol:0:32}"
    SYMBOLS+=("$symbol")
    check case "$name" "$symbol" "proof-$RUN-$tag" "$@"
}

case_ "1 low efficiency → DOWNSIZE" LOW --eff efficiency_score=0.2 --eff confidence=0.9 \
    --eff ts=now-5 --expect eff_action=DOWNSIZE --expect eff_reason=ok \
    --expect decision=ALLOW --expect eff_factor=0.4444 --expect downsize_factor=0.4444 \
    --expect extra_cooldown_sec=96 --factor-min 0.25 --factor-below 1.0
case_ "2 high efficiency → NONE" HIGH --eff efficiency_score=0.8 --eff confidence=0.9 \
    --eff ts=now-5 --expect eff_action=NONE --expect eff_reason=ok \
    --expect eff_factor=1.0000 --expect extra_cooldown_sec=0
case_ "3 missing efficiency → missing_eff" MISS --expect eff_action=NONE \
    --expect eff_reason=missing_eff --expect eff_factor=1.0000 --expect eff_score=
case_ "4 low confidence → low_conf" CONF --eff efficiency_score=0.2 --eff confidence=0.3 \
    --eff ts=now-5 --expect eff_action=NONE --expect eff_reason=low_conf \
    --expect eff_factor=1.0000
case_ "4b stale efficiency → stale_eff" STALE --eff efficiency_score=0.2 \
    --eff confidence=0.9 --eff ts=now-3600 --expect eff_action=NONE \
    --expect eff_reason=stale_eff --expect eff_stale=1 --expect eff_factor=1.0000
case_ "4c malformed efficiency → invalid_eff" BAD --eff efficiency_score=abc \
    --eff confidence=0.9 --eff ts=now-5 --expect eff_action=NONE \
    --expect eff_reason=invalid_eff --expect eff_factor=1.0000
case_ "4d NaN score and ms timestamp → invalid_eff" NAN --eff efficiency_score=nan \
    --eff confidence=0.9 --eff ts="$(date +%s)000" --expect eff_action=NONE \
    --expect eff_reason=invalid_eff
check metrics "5 metrics registered" "$METRICS_URL" p32_eff_apply_total p32_eff_factor \
    governor_permits_issued_total
check health "6 service health" "$METRICS_URL" "$GOVERNOR_PID" 7

if [ "$FAILED" -eq 0 ]; then
    echo "SUMMARY: PASS"
    exit 0
fi
echo "   governor log: last lines"
tail -n 5 "$WORK/governor.log" | sed 's/^/   /'
echo "SUMMARY: FAIL ($FAILED failed)"
exit 1
