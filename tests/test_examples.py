"""Every program in examples/ runs, the way its docstring says to run it, and prints
the right answer (issue 17: the applications SCOOP's documentation names)."""
import os
import re
import subprocess
import sys

import pytest

PY = sys.executable
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
LAUNCH = ["-m", "actorscoop", "-n", "2", "-q"]

CASES = {
    # file: (how it is run, arguments, what its output must match)
    "evolve_onemax.py": (LAUNCH, ["12", "80"], r"best of 12 generations of 80: (\d+) ones"),
    "pi_mapreduce.py": (LAUNCH, ["16", "5000"], r"pi ~= 3\.1\d* from 80,000 points"),
    "pi.py": ([], ["8", "20000"], r"pi ~= 3\.1"),
    "tree_search.py": (LAUNCH, ["7", "3"], r"^7-queens: 40 solutions$"),
    "map_reduce_words.py": (LAUNCH, [], r"most common: it 10, was 10, the 10\n"
                                         r"vocabulary after each chunk: \[9, 12, 16, 20\]"),
    "grid_search.py": ([], [], r"best \{'C': \d+, 'gamma': [\de.-]+\} accuracy 0\.\d+ \(12 fits\)"),
    "object_store.py": ([], ["16"], r"16 MiB array: 8 tasks read it in place; column means "
                                    r"match; doubled sum ratio 2\.0"),
    "actors.py": ([], ["6"], r"after 6 rounds: distance to target 0\.\d+, 6 updates"),
}


def test_every_example_is_tested():
    assert sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py")) == sorted(CASES)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(CASES))
def test_example(name, tmp_path):
    how, args, expect = CASES[name]
    env = {k: v for k, v in os.environ.items() if k != "ACTORSCOOP_ADDRESS"}
    r = subprocess.run([PY, *how, os.path.join(EXAMPLES, name), *args], capture_output=True,
                       text=True, timeout=220, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(expect, r.stdout, re.M)
    assert m, r.stdout + r.stderr
    if name == "evolve_onemax.py":
        assert int(m.group(1)) > 60  # evolution improved on random strings (about 50)
