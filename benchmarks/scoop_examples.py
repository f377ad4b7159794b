#!/usr/bin/env python
"""SCOOP's own examples, run by a new user's recipe (issue 17): each file of SCOOP's
repository (soravux/scoop) that needs no network, GUI or extra library, once under real
SCOOP (``python -m scoop -n 2 FILE``) and once with its import line changed (``from scoop
import`` -> ``from actorscoop import``, ``import scoop`` -> ``import actorscoop as scoop``)
under ``python -m actorscoop -n 2 FILE``, side by side, one example at a time.

    python benchmarks/scoop_examples.py [--scoop-repo DIR] [--only NAME,...] [--repeat K]

``--scoop-repo``: a checkout or a bare clone of soravux/scoop (default: $SCOOP_REPO, else
/work/.mirror/soravux+scoop/repo). SCOOP runs from the bench venv ($BENCH_VENV, default
/work/benchvenv); actorscoop from the Python running this script. Times are whole
processes, launcher start to exit (what the user waits for), the best of --repeat runs.
The table gives each time, the ratio actorscoop / SCOOP and whether each run ended well
(exit code 0 and the expected text in its output).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_REPO = os.environ.get("SCOOP_REPO", "/work/.mirror/soravux+scoop/repo")
SCOOP_PY = os.path.join(os.environ.get("BENCH_VENV", "/work/benchvenv"), "bin", "python")

# file -> (arguments, a regular expression its output must match). Left out: image_resize
# (PIL and images), url_fetch, url_fetch_doc and rssDoc (network). The DEAP ones run when
# DEAP is installed (it is the library SCOOP users most often pair with it);
# interactive_shell reads a closed stdin and ends.
EXAMPLES = {
    "deap_ga_onemax.py": ((), r"\S"),
    "deap_ga_evosn.py": ((), r"\S"),
    "interactive_shell.py": ((), r"Python"),
    "callback.py": ((), r"\S"),
    "conditional_execution.py": ((), r"Hello (Parallel )?World"),
    "conditional_import.py": ((), r"\S"),
    # It lets "This exception is normal" out of main() on purpose: Python exits with 1
    # (SCOOP's launcher with 0, whatever the script did).
    "except_example.py": ((), r"Exception: This exception is normal", (0, 1)),
    "full_tree.py": ((), r"\S"),
    "lambda.py": ((), r"\S"),
    "map_as_completed.py": ((), r"\S"),
    "map_doc.py": ((), r"\S"),
    "map_reduce.py": ((), r"\S"),
    "map_scan.py": ((), r"\S"),
    "object.py": ((), r"\S"),
    "pi_calc.py": ((), r"3\.1"),
    "pi_calc_doc.py": ((), r"3\.1"),
    "recurse.py": ((), r"\S"),
    "shared_example.py": ((), r"\S"),
    "shared_example_doc.py": ((), r"\S"),
    "sorting.py": ((), r"\S"),
    "sum_multiples.py": ((), r"\S"),
    "tree_traversal.py": ((), r"\S"),
    "tree/scoop_tree.py": (("tree.txt",), r"total time"),
}
# The ones a test runs (tests/test_scoop_examples.py): a few seconds each.
FAST = ("conditional_execution.py", "conditional_import.py", "except_example.py",
        "lambda.py", "map_as_completed.py", "map_doc.py", "map_reduce.py", "map_scan.py",
        "object.py", "shared_example.py", "shared_example_doc.py", "sorting.py",
        "sum_multiples.py", "tree/scoop_tree.py", "interactive_shell.py")
_FROM = re.compile(r"^(\s*)from scoop(\.futures)? import ", re.M)
_IMPORT = re.compile(r"^(\s*)import scoop\s*$", re.M)


def convert(text: str) -> str:
    """A SCOOP program with its import lines changed for actorscoop, nothing else."""
    text = _FROM.sub(lambda m: f"{m.group(1)}from actorscoop{m.group(2) or ''} import ", text)
    return _IMPORT.sub(lambda m: f"{m.group(1)}import actorscoop as scoop", text)


def extract(repo: str, dest: str) -> str:
    """SCOOP's examples/ from ``repo`` (a checkout or a bare clone) into ``dest``."""
    os.makedirs(dest, exist_ok=True)
    if os.path.isdir(os.path.join(repo, "examples")):
        shutil.copytree(os.path.join(repo, "examples"), os.path.join(dest, "examples"),
                        dirs_exist_ok=True)
    else:
        archive = subprocess.run(["git", "--git-dir", repo, "archive", "HEAD", "examples"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return os.path.join(dest, "examples")


def prepare(repo: str, dest: str, python: str = sys.executable) -> dict:
    """Two copies of the examples under ``dest``: {"scoop": dir, "actorscoop": dir}; the
    second with its import lines changed. The tree example's tree (random) is made once
    and shared, so both run the same work."""
    src = extract(repo, os.path.join(dest, "src"))
    subprocess.run([python, "TreeGen.py", "--height", "4", "--minChildren", "1",
                    "--maxChildren", "4", "--scale", "0.001", "-f", "tree.txt"],
                   cwd=os.path.join(src, "tree"), check=True, capture_output=True, timeout=120)
    dirs = {}
    for system in ("scoop", "actorscoop"):
        d = os.path.join(dest, system)
        shutil.copytree(src, d, dirs_exist_ok=True)
        if system == "actorscoop":
            for root, _, files in os.walk(d):
                for f in files:
                    if f.endswith(".py"):
                        path = os.path.join(root, f)
                        with open(path) as fh:
                            text = fh.read()
                        with open(path, "w") as fh:
                            fh.write(convert(text))
        dirs[system] = d
    return dirs


def run(system: str, python: str, directory: str, name: str, timeout: float = 300.0) -> dict:
    """Run one example; {"ok", "seconds", "code", "tail"}."""
    args, expect, *codes = EXAMPLES[name]
    codes = codes[0] if codes else (0,)
    folder, file = os.path.split(os.path.join(directory, name))
    module = "scoop" if system == "scoop" else "actorscoop"
    env = {k: v for k, v in os.environ.items() if k not in ("ACTORSCOOP_ADDRESS", "PYTHONPATH")}
    t = time.perf_counter()
    try:
        done = subprocess.run([python, "-m", module, "-n", "2", file, *args], cwd=folder,
                              capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out = "timeout", f"{exc.stdout or ''}{exc.stderr or ''}"
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
    seconds = time.perf_counter() - t
    ok = code in codes and re.search(expect, out or "") is not None
    return {"ok": ok, "seconds": seconds, "code": code, "tail": (out or "")[-600:]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scoop-repo", default=DEFAULT_REPO)
    p.add_argument("--scoop-python", default=SCOOP_PY)
    p.add_argument("--only", default="", help="comma-separated example files")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args(argv)
    names = [n for n in EXAMPLES if not a.only or n in a.only.split(",")]
    with tempfile.TemporaryDirectory(prefix="scoop-examples-") as tmp:
        dirs = prepare(a.scoop_repo, tmp, a.scoop_python)
        rows = []
        print(f"SCOOP's examples, -n 2 each, best of {a.repeat}; "
              f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs")
        print("| example | SCOOP s | actorscoop s | ratio | SCOOP ok | actorscoop ok |")
        print("|---|---:|---:|---:|:-:|:-:|", flush=True)
        for name in names:
            best = {}
            for i in range(a.repeat):
                order = ("scoop", "actorscoop") if i % 2 == 0 else ("actorscoop", "scoop")
                for system in order:
                    py = a.scoop_python if system == "scoop" else sys.executable
                    r = run(system, py, dirs[system], name, a.timeout)
                    if system not in best or (r["ok"] and r["seconds"] < best[system]["seconds"]) \
                            or not best[system]["ok"]:
                        best[system] = r
            s, o = best["scoop"], best["actorscoop"]
            ratio = o["seconds"] / s["seconds"] if s["seconds"] else float("nan")
            rows.append((name, s, o, ratio))
            print(f"| {name} | {s['seconds']:.2f} | {o['seconds']:.2f} | {ratio:.2f} | "
                  f"{'yes' if s['ok'] else 'NO (' + str(s['code']) + ')'} | "
                  f"{'yes' if o['ok'] else 'NO (' + str(o['code']) + ')'} |", flush=True)
        for name, s, o, _ in rows:
            if not o["ok"]:
                print(f"\n--- actorscoop {name} (exit {o['code']}):\n{o['tail']}")
        total_s = sum(r[1]["seconds"] for r in rows)
        total_o = sum(r[2]["seconds"] for r in rows)
        print(f"\nall: SCOOP {total_s:.1f} s, actorscoop {total_o:.1f} s, ratio "
              f"{total_o / total_s:.2f}; ended well: SCOOP {sum(r[1]['ok'] for r in rows)}/"
              f"{len(rows)}, actorscoop {sum(r[2]['ok'] for r in rows)}/{len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
