"""The reliability figures' script (benchmarks/reliability.py) in its quick form: load
through one driver and across a 4-node cluster (every result checked, no task lost or run
twice), objects created and dropped (tables, store and /dev/shm back to empty), and chaos
(random SIGKILLs of workers, actors and nodes: retriable results right, the rest typed
errors, fresh work runs afterwards). The long run is `python benchmarks/reliability.py`."""
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "reliability.py")


def test_quick_reliability_run_passes(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--quick"], capture_output=True, text=True,
                          timeout=540, cwd=tmp_path)
    report = proc.stdout
    assert proc.returncode == 0, report + proc.stderr[-3000:]
    assert "never run: 0; run more than once: 0" in report
    assert report.count("**PASS**") == 2 and "FAIL" not in report, report
