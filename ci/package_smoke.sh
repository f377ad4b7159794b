#!/usr/bin/env bash
# The package as a user meets it: build the sdist and, from the sdist, the wheel (so a file
# the sdist forgot fails here); install the wheel into a fresh venv and run a smoke test
# from outside the checkout, so that the installed copy, not the source tree, is imported.
#
#   bash ci/package_smoke.sh [PYTHON]        # PYTHON: builds with it (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"
WORK="$(mktemp -d /tmp/asc-package-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m venv "$WORK/build-env"
"$WORK/build-env/bin/pip" install -q build
"$WORK/build-env/bin/python" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; exit 1; }
ls -l "$WORK/dist"
sdist=("$WORK"/dist/actorscoop-*.tar.gz)
wheel=("$WORK"/dist/actorscoop-*.whl)
# the sdist carries the docs, examples and tests; the wheel the dashboard's page
tar -tzf "${sdist[0]}" >"$WORK/sdist.txt"
for path in LICENSE CHANGELOG.md README.md docs/plasma.md examples/pi.py tests/conftest.py \
            actorscoop/dashboard/static/dashboard.js; do
    grep -q "/$path\$" "$WORK/sdist.txt" || { echo "sdist lacks $path"; exit 1; }
done
"$WORK/build-env/bin/python" - "${wheel[0]}" <<'PYEOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for need in ("actorscoop/dashboard/static/dashboard.js", "actorscoop/dashboard/static/index.html"):
    assert need in names, f"the wheel lacks {need}"
assert not [n for n in names if n.startswith("tests/")], "tests/ must not be installed as a package"
meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
text = zipfile.ZipFile(sys.argv[1]).read(meta).decode()
for need in ("License-Expression: MIT", "Classifier: ", "Project-URL: ", "Requires-Dist: pyzmq"):
    assert need in text, f"the wheel's METADATA lacks {need!r}"
print("wheel contents: ok")
PYEOF
"$PY" -m venv "$WORK/user-env"
"$WORK/user-env/bin/pip" install -q "${wheel[0]}"
cd "$WORK"  # not the checkout: import the installed package
"$WORK/user-env/bin/actorscoop" --version
"$WORK/user-env/bin/python" - <<'PYEOF'
import os, numpy as np, actorscoop as asc
assert "user-env" in asc.__file__, asc.__file__

@asc.remote
def square(x):
    return x * x

@asc.remote
class Counter:
    def __init__(self):
        self.n = 0
    def incr(self):
        self.n += 1
        return self.n

asc.init(num_cpus=2)
assert asc.get([square.remote(i) for i in range(100)]) == [i * i for i in range(100)]
arr = asc.get(asc.put(np.arange(1_000_000)))
assert arr.sum() == 499999500000
c = Counter.remote()
assert asc.get([c.incr.remote() for _ in range(10)])[-1] == 10
from actorscoop import futures
assert list(futures.map(abs, [-1, -2, 3])) == [1, 2, 3]
asc.shutdown()
print("smoke test from the installed wheel: ok")
PYEOF
