"""SCOOP's own examples (soravux/scoop), their import line changed, run under
``python -m actorscoop -n 2`` (issue 17): the quick ones, each must end as it does under
SCOOP. benchmarks/scoop_examples.py runs them all against real SCOOP, side by side.

They need a checkout or bare clone of SCOOP's repository: $SCOOP_REPO, else
/work/.mirror/soravux+scoop/repo; without one these tests are skipped and say so."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
import scoop_examples  # noqa: E402

REPO = scoop_examples.DEFAULT_REPO
needs_repo = pytest.mark.skipif(
    not os.path.isdir(REPO), reason=f"no SCOOP repository at {REPO} (set SCOOP_REPO to a "
                                    "checkout or bare clone of soravux/scoop)")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    dest = tmp_path_factory.mktemp("scoop-examples")
    return scoop_examples.prepare(REPO, str(dest))["actorscoop"]


def test_only_the_import_lines_change():
    text = ("from scoop import futures, shared\nimport scoop\n  from scoop.futures import map as m\n"
            "x = 'from scoop import futures'\nprint(scoop.worker)\n")
    assert scoop_examples.convert(text) == (
        "from actorscoop import futures, shared\nimport actorscoop as scoop\n"
        "  from actorscoop.futures import map as m\nx = 'from scoop import futures'\n"
        "print(scoop.worker)\n")


@needs_repo
@pytest.mark.timeout(200)
@pytest.mark.parametrize("name", scoop_examples.FAST)
def test_scoop_example_runs_with_its_import_line_changed(converted, name):
    r = scoop_examples.run("actorscoop", sys.executable, converted, name, timeout=180)
    assert r["ok"], f"{name}: exit {r['code']}\n{r['tail']}"
