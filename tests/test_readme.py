"""The README's Python examples run as written (issue 21): each ```python block, in its own
fresh interpreter with ``import actorscoop as asc`` before it (the README's convention), in
a temporary directory, must exit 0. A block that is not meant to run alone would need
saying so here; today every block runs."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")


def python_blocks():
    with open(README) as f:
        text = f.read()
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        line = text.count("\n", 0, m.start()) + 1
        out.append(pytest.param(m.group(1), id=f"line{line}"))
    return out


BLOCKS = python_blocks()


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 8


@pytest.mark.timeout(180)
@pytest.mark.parametrize("code", BLOCKS)
def test_a_readme_example_runs(code, tmp_path):
    script = tmp_path / "example.py"
    script.write_text("import actorscoop as asc\n\n" + textwrap.dedent(code))
    env = dict(os.environ, ACTORSCOOP_TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, f"--- the block:\n{code}\n--- stderr:\n{proc.stderr[-4000:]}"
