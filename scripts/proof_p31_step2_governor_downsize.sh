#!/usr/bin/env bash
# P3.1 Step 2 proof: the governor downsize hint (p31_efficiency) on the real `quantum-governor run`.
# A thin wrapper of `quantum-governor proof step2` (governor_core/proofs/): arguments are passed
# on (--redis-url URL, --force). quantum-governor is taken from $VIRTUAL_ENV/bin, else PATH,
# else this repository's .venv.
set -eu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for candidate in "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/quantum-governor}" \
        "$(command -v quantum-governor || true)" "$ROOT/.venv/bin/quantum-governor"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        exec "$candidate" proof step2 "$@"
    fi
done
echo "$(basename "$0"): quantum-governor not found in \$VIRTUAL_ENV/bin, on PATH or in" \
    "$ROOT/.venv/bin: activate the virtualenv it is installed in" >&2
exit 2
