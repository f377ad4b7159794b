"""A SCOOP program runs here with its import line changed (issue 17): SCOOP's module
globals (worker, SIZE, IS_RUNNING, IS_ORIGIN, DEBUG, logger) in the root and in tasks,
and futures.map's keyword arguments (timeout honoured, others ignored with a warning)."""
import concurrent.futures
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import actorscoop
from actorscoop import futures

PY = sys.executable


def scoop_globals(_=None):
    import actorscoop as scoop
    return {"worker": scoop.worker, "SIZE": scoop.SIZE, "IS_RUNNING": scoop.IS_RUNNING,
            "IS_ORIGIN": scoop.IS_ORIGIN, "DEBUG": scoop.DEBUG, "pid": os.getpid(),
            "logger": scoop.logger.name}


def test_globals_in_the_root_and_in_tasks(node):
    root = scoop_globals()
    assert root["worker"] == f"{socket.gethostname()}:{os.getpid()}"
    assert root["SIZE"] == 2 and root["IS_RUNNING"] is True and root["IS_ORIGIN"] is True
    assert root["DEBUG"] is False and root["logger"] == "actorscoop"
    assert actorscoop.logger is logging.getLogger("actorscoop")
    inside = list(futures.map(scoop_globals, range(4), chunksize=1))
    for g in inside:
        assert g["pid"] != os.getpid() and g["worker"] == f"{socket.gethostname()}:{g['pid']}"
        assert g["SIZE"] == 2 and g["IS_RUNNING"] is True and g["IS_ORIGIN"] is False
    assert {"worker", "SIZE", "IS_ORIGIN"} <= set(dir(actorscoop))
    assert "SIZE" not in actorscoop.__all__


def test_globals_cost_nothing_at_import_and_before_a_node():
    code = textwrap.dedent("""
        import sys
        import actorscoop as scoop
        from actorscoop import SIZE, IS_ORIGIN
        from actorscoop._client import _context
        print(SIZE, IS_ORIGIN, scoop.IS_RUNNING, scoop.DEBUG, _context.current_or_none() is not None,
              "actorscoop._driver._api" in sys.modules)
    """)
    env = {**os.environ, "ACTORSCOOP_NUM_CPUS": "3"}
    env.pop("ACTORSCOOP_ADDRESS", None)
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.split() == ["3", "True", "False", "False", "False", "False"], out.stderr


def test_globals_under_the_launcher(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text(textwrap.dedent("""
        import actorscoop as scoop
        from actorscoop import futures, SIZE

        def where(_):
            return scoop.worker, scoop.SIZE, scoop.IS_ORIGIN

        if __name__ == "__main__":
            print("ROOT", SIZE, scoop.IS_RUNNING, scoop.IS_ORIGIN)
            for w, size, origin in futures.map(where, range(3)):
                print("TASK", size, origin)
    """))
    out = subprocess.run([PY, "-m", "actorscoop", "-n", "3", str(script)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "ROOT 3 True True" in lines
    assert lines.count("TASK 3 False") == 3


def slow(x):
    time.sleep(x)
    return x


def test_map_honours_timeout_and_ignores_other_keywords(node):
    futures_module = sys.modules["actorscoop.futures"]
    futures_module._warned.discard("parallelLevel")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert list(futures.map(abs, [-1, -2], parallelLevel=2)) == [1, 2]
        assert list(futures.map(abs, [-3], parallelLevel=3)) == [3]  # warned once
        assert sorted(futures.map_as_completed(abs, [-1, 2], spam=1)) == [1, 2]
        assert futures.mapReduce(abs, max, [-5, 2], eggs=1) == 5
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert len([m for m in messages if "parallelLevel" in m]) == 1, messages
    assert any("spam" in m for m in messages) and any("eggs" in m for m in messages)
    assert all(w.filename == __file__ for w in caught), [w.filename for w in caught]
    it = futures.map(slow, [30], timeout=0.5, parallelLevel=1)
    with pytest.raises(concurrent.futures.TimeoutError):
        next(it)  # after 0.5 s, not 30


SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scoop_scripts")


@pytest.mark.timeout(180)
def test_the_original_exception_through_every_api_nested_three_deep():
    """A ValueError three tasks deep comes out of futures, map, Executor, Pool, joblib and
    asc.get as itself: its class, args and str(), a TaskError too, with each remote
    traceback shown once and naming this script's file and line."""
    import json
    script = os.path.join(SCRIPTS, "nested_errors.py")
    out = subprocess.run([PY, script], capture_output=True, text=True, timeout=170)
    assert out.returncode == 0, out.stderr
    reports = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(reports) == {"futures", "map", "executor", "pool", "joblib", "get"}
    for way, r in reports.items():
        assert r["ok"], (way, r)
        assert r["type"] == "ValueError" and r["is_task_error"] and r["has_cause"], (way, r)
        assert r["args"] == ["boom", 7] and r["str"] == str(ValueError("boom", 7)), (way, r)
        tb = r["traceback"]
        mark = "REMOTE-RAISE-LINE" if way == "get" else "RAISE-LINE"
        raise_lines = [x for x in tb.splitlines() if x.strip().endswith(f"# {mark}")]
        assert len(raise_lines) == 1, (way, tb)  # shown once, not once per level
        assert "<dynamic-code>" not in tb, (way, tb)
        lineno = next(i for i, x in enumerate(open(script), 1) if x.rstrip().endswith(f"# {mark}"))
        assert f'File "{script}", line {lineno}, in ' in tb, (way, tb)
        assert tb.count("raised through task") == 2, (way, tb)
