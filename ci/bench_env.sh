#!/usr/bin/env bash
# Create the benchmark virtualenv with actorscoop (editable) and its peers.
#
#   bash ci/bench_env.sh            # -> .benchvenv in this checkout (or $BENCH_VENV)
#
# Peers: ray[default], dask[distributed], loky, scoop (+ psutil, numpy).
# A peer that fails to install is reported and skipped; the suite then shows
# it as "not installed". Re-running is cheap: pip skips what is already there.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$REPO/.benchvenv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV" || { echo "venv creation failed" >&2; exit 1; }
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip setuptools wheel

# Base tools the suite itself needs (the watchdog uses psutil).
"$VPY" -m pip install -q psutil numpy || { echo "psutil/numpy failed" >&2; exit 1; }

# actorscoop from this repo, editable, so the suite measures the working tree.
# Re-run on every call: an editable install made before a package's __init__.py
# existed maps it as a namespace package (run.py also puts the repo first on the
# actorscoop runner's PYTHONPATH for that reason).
if ! "$VPY" -m pip install -q -e "$REPO"; then
    echo "WARNING: pip install -e $REPO failed; actorscoop will be skipped" >&2
fi

failed=()
for spec in "ray[default]" "dask[distributed]" "loky" "scoop"; do
    echo "installing $spec"
    if ! "$VPY" -m pip install -q "$spec"; then
        echo "WARNING: $spec failed to install; continuing without it" >&2
        failed+=("$spec")
    fi
done

echo
echo "bench venv: $VENV"
"$VPY" - <<'PY'
import importlib
for mod in ("actorscoop", "ray", "dask", "distributed", "loky", "scoop", "psutil", "numpy"):
    try:
        m = importlib.import_module(mod)
        print(f"  {mod:12s} {getattr(m, '__version__', '?')}")
    except Exception as e:  # report, don't stop: the suite skips what is missing
        print(f"  {mod:12s} NOT AVAILABLE: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
PY
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed to install: ${failed[*]}"
fi
exit 0
