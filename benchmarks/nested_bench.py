#!/usr/bin/env python
"""Nested tasks at size (issue 14): actorscoop, SCOOP and Ray side by side, one run.

    python benchmarks/nested_bench.py                 # the table; --write appends it to RESULTS.md
    python benchmarks/nested_bench.py --long          # also depth 16 (131,071 tasks), every style
    python benchmarks/nested_bench.py --quick         # depth 10 and fib(15) only: a smoke run

Cells (each in a fresh process tree, watched by _watchdog: a wall-clock limit, a memory
guard, peak memory of the whole tree — node, workers and all — and every process killed
by pid at the end):

- balanced binary trees of depth 12 (8,191 tasks) and 14 (32,767) through each way of
  nesting a system has: actorscoop ``asc.get`` in a remote function, ``futures.submit``
  (two results), ``futures.map`` (SCOOP's recurse.py shape) and a mix of the three; SCOOP
  ``futures.submit`` and ``futures.map``; Ray ``ray.get`` in a task;
- fib(16), 3,193 tasks, unbalanced;
- a whole program of recurse.py's shape, process start to exit, under ``python -m scoop
  -n 2`` and ``python -m actorscoop -n 2`` (benchmarks/peers_nested/recurse_shape.py;
  ``--scoop-repo DIR`` also runs SCOOP's own examples/recurse.py from a checkout, its
  import line changed for actorscoop).

Times run from the root's submission to its result on a started, warm runtime (a depth-4
tree first). tasks/s counts every call as one task. Every system gets 2 CPUs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PEERS = os.path.join(HERE, "peers_nested")
import _venv  # noqa: E402  (this directory is sys.path[0])
DEFAULT_VENV_PY = _venv.PYTHON

sys.path.insert(0, PEERS)
import psutil  # noqa: E402

import _watchdog  # noqa: E402
from _trees import RESULT, tasks_of_fib, tasks_of_tree  # noqa: E402

STYLES = {"actorscoop": ("get", "submit", "map", "mix"), "scoop": ("submit", "map"), "ray": ("get",)}
STYLE_NAMES = {"get": "asc.get / ray.get in a task", "submit": "futures.submit ×2, .result()",
               "map": "sum(futures.map(f, [d-1]*2))", "mix": "a mix of the three"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="depth 10 and fib(15), one recurse run each")
    p.add_argument("--long", action="store_true", help="also depth 16 (131,071 tasks) for every actorscoop style")
    p.add_argument("--only", default="actorscoop,scoop,ray")
    p.add_argument("--python", default=None, help="interpreter for SCOOP and Ray (default: the bench venv)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per cell")
    p.add_argument("--mem-limit-gb", type=float, default=12.0, help="memory guard per cell (PSS of the tree)")
    p.add_argument("--recurse-runs", type=int, default=None, help="whole-program runs per system (default 5)")
    p.add_argument("--scoop-repo", default=None, help="a checkout of soravux/scoop: also run its examples/recurse.py")
    p.add_argument("--write", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    p.add_argument("--json", default=None, help="write the raw cells to this file")
    args = p.parse_args(argv)
    if args.python is None:
        args.python = DEFAULT_VENV_PY if os.path.exists(DEFAULT_VENV_PY) else sys.executable
    args.systems = [s.strip() for s in args.only.split(",") if s.strip()]
    if args.recurse_runs is None:
        args.recurse_runs = 1 if args.quick else 5
    return args


def wait_idle(limit=25.0, patience=30.0):
    """Wait (a while) for the machine to be quiet before a cell: the cores are shared."""
    deadline = time.monotonic() + patience
    busy = psutil.cpu_percent(interval=0.5)
    while busy > limit and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=0.5)
    return busy


def env_for(system):
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
    path = [PEERS] + ([REPO] if system == "actorscoop" else [])
    env["PYTHONPATH"] = os.pathsep.join(path + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["NESTED_FUTURES"] = "scoop.futures" if system == "scoop" else "actorscoop.futures"
    return env


def run_cell(args, system, shape, style, n):
    if system == "scoop":
        cmd = [args.python, "-m", "scoop", "-n", "2", os.path.join(PEERS, "scoop_nested.py"), shape, style, str(n)]
    else:
        py = sys.executable if system == "actorscoop" else args.python
        cmd = [py, os.path.join(PEERS, f"{system}_nested.py"), shape, style, str(n)]
    busy = wait_idle()
    os.makedirs(os.path.join(HERE, "out", "logs"), exist_ok=True)
    log = os.path.join(HERE, "out", "logs", f"nested_{system}_{shape}{n}_{style}.log")
    watch = _watchdog.run_guarded(cmd, env=env_for(system), cwd=PEERS, timeout_s=args.timeout,
                                  mem_limit_bytes=int(args.mem_limit_gb * 2 ** 30), log_path=log)
    tasks = tasks_of_tree(n) if shape == "tree" else tasks_of_fib(n)
    cell = {"system": system, "shape": shape, "style": style, "n": n, "tasks": tasks,
            "status": watch["status"], "peak_pss": watch["peak_pss_bytes"], "peak_rss": watch["peak_rss_bytes"],
            "peak_procs": watch["peak_procs"], "busy_before": busy, "seconds": None}
    for line in watch["output"].splitlines():
        if line.startswith(RESULT):
            cell.update(json.loads(line[len(RESULT):]))
        elif line.startswith("@@START "):
            cell["started"] = float(line.split()[1])
    if cell["seconds"] is None:
        tail = [ln for ln in watch["output"].splitlines() if ln.strip()][-3:]
        cell["error"] = f"{watch['status']} (exit {watch['returncode']}): " + " | ".join(tail)[-300:]
        if watch["status"] == "timeout":
            cell["lower_bound"] = args.timeout
    return cell


def run_program(args, system, script, cwd):
    """Wall seconds of one whole program run, process start to exit, and its output."""
    if system == "scoop":
        cmd, env = [args.python, "-m", "scoop", "-n", "2", script], env_for("scoop")
    else:
        cmd, env = [sys.executable, "-m", "actorscoop", "-n", "2", script], {**env_for("actorscoop"), "ACTORSCOOP": "1"}
    wait_idle()
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    ok = out.returncode == 0 and "2^12 = 4096" in out.stdout
    return wall if ok else None, (out.stdout + out.stderr)[-300:]


def recurse_cells(args):
    programs = [("recurse shape (ours)", PEERS, "recurse_shape.py", "recurse_shape.py")]
    tmp = None
    if args.scoop_repo:
        original = os.path.join(args.scoop_repo, "examples", "recurse.py")
        tmp = tempfile.mkdtemp(prefix="asc-recurse-")
        with open(original) as f:
            text = f.read()
        with open(os.path.join(tmp, "recurse_scoop.py"), "w") as f:
            f.write(text)
        with open(os.path.join(tmp, "recurse_asc.py"), "w") as f:
            f.write(re.sub(r"^from scoop import futures", "from actorscoop import futures", text, flags=re.M))
        programs.append(("SCOOP's examples/recurse.py", tmp, "recurse_scoop.py", "recurse_asc.py"))
    cells = []
    for title, cwd, scoop_script, asc_script in programs:
        times = {"scoop": [], "actorscoop": []}
        errors = {}
        for _ in range(args.recurse_runs):  # interleaved: both see the same machine
            for system, script in (("scoop", scoop_script), ("actorscoop", asc_script)):
                if system not in args.systems:
                    continue
                wall, tail = run_program(args, system, script, cwd)
                if wall is None:
                    errors[system] = tail
                else:
                    times[system].append(wall)
        for system, ts in times.items():
            if system in args.systems:
                cells.append({"program": title, "system": system, "runs": ts,
                              "median": statistics.median(ts) if ts else None, "error": errors.get(system)})
    return cells


def fmt_s(cell):
    if cell.get("seconds") is not None:
        return f"{cell['seconds']:.2f} s"
    if cell.get("lower_bound"):
        return f"> {cell['lower_bound']:.0f} s (killed)"
    return cell.get("error", "failed")[:80]


def rate(cell):
    return cell["tasks"] / cell["seconds"] if cell.get("seconds") else None


def gib(b):
    return f"{b / 2 ** 30:.2f} GiB" if b else "–"


def tables(cells, recurse, args, stamp):
    out = [f"## Nested tasks (issue 14) — {stamp}", "",
           f"`python benchmarks/nested_bench.py{' --long' if args.long else ''}`; 2 CPUs each; "
           "time from the root's submission to its result on a warm runtime; "
           "memory = peak PSS of the whole process tree (node, workers, store).", ""]
    out += ["| shape | tasks | system | style | time | tasks/s | actorscoop advantage | peak memory | processes |",
            "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    best_asc = {}
    for c in cells:
        if c["system"] == "actorscoop" and c.get("seconds"):
            key = (c["shape"], c["n"])
            best_asc[key] = min(best_asc.get(key, c["seconds"]), c["seconds"])
    for c in cells:
        shape = f"tree depth {c['n']}" if c["shape"] == "tree" else f"fib({c['n']})"
        r = rate(c)
        asc = best_asc.get((c["shape"], c["n"]))
        if c["system"] == "actorscoop":
            adv = "–"
        elif asc and c.get("seconds"):
            adv = f"{c['seconds'] / asc:.1f}×"
        elif asc and c.get("lower_bound"):
            adv = f"> {c['lower_bound'] / asc:.0f}×"
        else:
            adv = "–"
        out.append(f"| {shape} | {c['tasks']:,} | {c['system']} | {STYLE_NAMES[c['style']]} | {fmt_s(c)} | "
                   f"{f'{r:,.0f}' if r else '–'} | {adv} | {gib(c.get('peak_pss'))} | {c.get('peak_procs', '–')} |")
    out.append("")
    out.append("*actorscoop advantage*: that system's time ÷ actorscoop's best time for the same shape.")
    if recurse:
        out += ["", "Whole program, process start to exit (median of the runs; systems interleaved):", "",
                "| program | system | median | runs |", "|---|---|---:|---|"]
        for r in recurse:
            med = f"{r['median']:.2f} s" if r["median"] is not None else f"failed: {r['error']}"
            out.append(f"| {r['program']} | {r['system']} | {med} | {', '.join(f'{t:.2f}' for t in r['runs'])} |")
    out += ["", "Targets (issue 14):", ""] + [f"- {line}" for line in verdicts(cells, recurse)]
    return "\n".join(out) + "\n"


def verdicts(cells, recurse):
    lines = []
    by = {(c["system"], c["shape"], c["style"], c["n"]): c for c in cells}
    for prog in {r["program"] for r in recurse}:
        a = next((r for r in recurse if r["program"] == prog and r["system"] == "actorscoop"), None)
        s = next((r for r in recurse if r["program"] == prog and r["system"] == "scoop"), None)
        if a and s and a["median"] and s["median"]:
            ok = a["median"] <= s["median"]
            lines.append(f"{prog}, whole run no slower than SCOOP: {a['median']:.2f} s vs {s['median']:.2f} s "
                         f"({s['median'] / a['median']:.2f}×): {'PASS' if ok else 'FAIL'}")
    c = by.get(("actorscoop", "tree", "get", 14))
    if c and rate(c):
        lines.append(f"depth 14 through asc.get ≥ 10,000 tasks/s: {rate(c):,.0f}: "
                     f"{'PASS' if rate(c) >= 10_000 else 'FAIL'}")
    for n in (15, 16):
        a = by.get(("actorscoop", "fib", "get", n))
        r = by.get(("ray", "fib", "get", n))
        if a and r and a.get("seconds"):
            ray_s = r.get("seconds") or r.get("lower_bound")
            if ray_s:
                x = ray_s / a["seconds"]
                lines.append(f"fib({n}) ≥ 20× Ray: {'≥ ' if not r.get('seconds') else ''}{x:.0f}×: "
                             f"{'PASS' if x >= 20 else 'FAIL'}")
    deep = [c for c in cells if c["system"] == "actorscoop" and c["shape"] == "tree" and c["n"] == 16]
    for c in deep:
        ok = c.get("seconds") and c.get("peak_pss") and c["peak_pss"] <= 2 * 2 ** 30
        lines.append(f"depth 16 through {c['style']}: right result, peak memory of the node "
                     f"{gib(c.get('peak_pss'))} (≤ 2 GiB): {'PASS' if ok else 'FAIL'}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    import compileall  # as pip install would have (see run.py's compile_bytecode)
    compileall.compile_dir(os.path.join(REPO, "actorscoop"), quiet=1)
    if not _watchdog.become_subreaper():
        print("warning: cannot become a child subreaper; strays are found by pid only", file=sys.stderr)
    depths = [10] if args.quick else [12, 14]
    fibs = [15] if args.quick else [16]
    cells = []
    try:
        for n in depths:
            for system in args.systems:
                for style in STYLES[system]:
                    cells.append(run_cell(args, system, "tree", style, n))
                    print(json.dumps({k: v for k, v in cells[-1].items() if k != "error"}), flush=True)
        for n in fibs:
            for system in args.systems:
                style = "submit" if system == "scoop" else "get"
                cells.append(run_cell(args, system, "fib", style, n))
                print(json.dumps(cells[-1]), flush=True)
        if args.long and "actorscoop" in args.systems:
            for style in STYLES["actorscoop"]:
                cells.append(run_cell(args, "actorscoop", "tree", style, 16))
                print(json.dumps(cells[-1]), flush=True)
        recurse = recurse_cells(args)
    finally:
        _watchdog.kill_tree()
        _watchdog.reap_zombies()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = tables(cells, recurse, args, stamp)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cells": cells, "recurse": recurse, "time": stamp}, f, indent=1)
    if args.write:
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
