#!/usr/bin/env bash
# Trust proof (SPEC 8): explain after expiry, promote refused/forced, rollback, kill on/off and
# their ops-ledger entries, on the real services. It runs on its own redis-server, or on a given
# --redis-url only when that database is empty (it turns the kill switch on).
# A thin wrapper of `quantum-governor proof trust` (governor_core/proofs/): arguments are passed
# on (--redis-url URL). quantum-governor is taken from $VIRTUAL_ENV/bin, else PATH,
# else this repository's .venv.
set -eu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for candidate in "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/quantum-governor}" \
        "$(command -v quantum-governor || true)" "$ROOT/.venv/bin/quantum-governor"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        exec "$candidate" proof trust "$@"
    fi
done
echo "$(basename "$0"): quantum-governor not found in \$VIRTUAL_ENV/bin, on PATH or in" \
    "$ROOT/.venv/bin: activate the virtualenv it is installed in" >&2
exit 2
