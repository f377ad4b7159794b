"""Where the peers (Ray, Dask, loky, SCOOP) are installed for side-by-side runs: the venv
named by $BENCH_VENV, else .benchvenv in this checkout (``bash ci/bench_env.sh`` makes it)."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("BENCH_VENV") or os.path.join(REPO, ".benchvenv")
PYTHON = os.path.join(VENV, "bin", "python")
