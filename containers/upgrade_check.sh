#!/usr/bin/env bash
# `make upgrade-check`: what the newest versions pyproject.toml's ranges allow would change and break, with the
# committed locks and environments untouched. Resolves every lock afresh into a temporary folder (`make locks
# LOCK_OUT=...`), prints the version changes (containers/lock_changes.py), builds a dev venv and an XLA test
# environment from those locks, runs the unit tests and one XLA training in them, and ends with a few lines:
# each phase passed or what failed. Exit status 0 when everything passed. Logs and environments stay in the
# folder (UPGRADE_DIR, default a new /tmp/banglasenti-upgrade.*) until removed.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${UPGRADE_DIR:-$(mktemp -d /tmp/banglasenti-upgrade.XXXXXX)}
mkdir -p "$DIR"
PY=${PYTHON:-python3.11}
XLA_TRAINING=${XLA_TRAINING:-test_small_updates_survive}
results=()
status=0

# step NAME LOG COMMAND...: run COMMAND with its output in LOG; record NAME's outcome.
step() {
    local name=$1 log=$2
    shift 2
    echo "== upgrade-check: $name (log: $log)"
    if "$@" >"$log" 2>&1; then
        results+=("$name: passed")
        return 0
    fi
    status=1
    local failed
    failed=$(grep -E '^(FAILED|ERROR) |Error: |error: ' "$log" | grep -v 'is ignored: it is neither' | head -n 5)
    results+=("$name: FAILED${failed:+$'\n'$failed}" "  (last lines: tail $log)")
    return 1
}

UV=${UV:-$PWD/.venv/bin/uv}  # the committed dev venv's (make upgrade-check passes it)
if ! step "resolve the newest locks" "$DIR/locks.log" make --no-print-directory locks LOCK_OUT="$DIR/locks" UV="$UV"; then
    tail -n 20 "$DIR/locks.log"
    printf '%s\n' "${results[@]}"
    exit 1
fi
echo "== upgrade-check: what changes against containers/locks/"
if ! "$PY" containers/lock_changes.py containers/locks "$DIR/locks" >"$DIR/changes.txt"; then
    status=1
    results+=("what changes: FAILED (containers/lock_changes.py)")
fi
cat "$DIR/changes.txt"

env_args=(LOCK_DIR="$DIR/locks" VENV="$DIR/venv" XLA_VENV="$DIR/xla-venv")
export BANGLASENTI_LOCK_DIR="$DIR/locks"  # tests/test_locks.py: the environments hold these locks
if step "dev venv from the new dev.txt" "$DIR/setup.log" make --no-print-directory setup "${env_args[@]}"; then
    step "unit tests" "$DIR/unit.log" "$DIR/venv/bin/python" -m pytest -q -p no:cacheprovider -rfE --tb=line \
        -m "not component and not slow and not network and not xla and not images"
fi
if step "XLA environment from the new xla.txt" "$DIR/setup-xla.log" \
        make --no-print-directory setup-xla "${env_args[@]}"; then
    step "one XLA training ($XLA_TRAINING)" "$DIR/xla.log" "$DIR/xla-venv/bin/python" -m pytest -q \
        -p no:cacheprovider -rfE --tb=line -m xla tests/test_xla.py -k "$XLA_TRAINING"
fi

echo "== upgrade-check: summary ($DIR)"
printf '%s\n' "${results[@]}"
if [ "$status" = 0 ]; then
    echo "everything passed; to move the locks forward: make locks LOCK_UPGRADE=--upgrade && make test"
fi
exit "$status"
