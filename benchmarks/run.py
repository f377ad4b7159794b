#!/usr/bin/env python
"""Side-by-side benchmark suite: actorscoop against the systems a user could pick instead.

    python benchmarks/run.py                      # full run, appends to benchmarks/RESULTS.md
    python benchmarks/run.py --quick              # smoke run (prints, writes out/*.json only)
    python benchmarks/run.py --only ray,actorscoop --workloads roundtrip,fib15

Each (system, workload) cell runs in its own fresh process tree, watched for a
wall-clock timeout and a memory limit (see _watchdog.py). See README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PEERS = os.path.join(HERE, "peers")
OUT = os.path.join(HERE, "out")
import _venv  # noqa: E402  (this directory is sys.path[0])
DEFAULT_VENV_PY = _venv.PYTHON

try:
    import psutil
except ImportError:  # re-run under the bench venv, which has it
    if os.path.exists(DEFAULT_VENV_PY) and os.path.realpath(sys.executable) != os.path.realpath(DEFAULT_VENV_PY):
        os.execv(DEFAULT_VENV_PY, [DEFAULT_VENV_PY, *sys.argv])
    sys.exit("run.py needs psutil: pip install psutil, or run ci/bench_env.sh")

import _report  # noqa: E402
import _sysinfo  # noqa: E402
import _watchdog  # noqa: E402
from _spec import ALIASES, SYSTEMS, WORKLOADS  # noqa: E402

RESULT_MARK = "@@BENCH_RESULT "
PROGRESS_MARK = "@@BENCH_MARK "


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help="comma-separated systems: " + ",".join(SYSTEMS))
    p.add_argument("--workloads", default="", help="comma-separated: " + ",".join(WORKLOADS) + " (fib = both fibs)")
    p.add_argument("--quick", action="store_true", help="short smoke run (small sizes, short timeouts)")
    p.add_argument("--python", default=None,
                   help="interpreter for the peer processes (default: the bench venv if it exists, "
                        "else this interpreter)")
    p.add_argument("--timeout", type=float, default=None,
                   help="wall-clock limit per cell in seconds (default 300, quick 90)")
    p.add_argument("--mem-limit-gb", type=float, default=6.0,
                   help="kill a cell whose process tree's summed memory exceeds this (GiB)")
    p.add_argument("--mem-metric", choices=["pss", "rss"], default="pss",
                   help="what the memory guard sums over the tree: pss (default; shared pages "
                        "split between processes) or rss (shared pages counted once per process)")
    p.add_argument("--idle-wait", type=float, default=None,
                   help="before each cell, wait up to this many seconds for the machine's CPU use "
                        "to drop below 25%% (default 60, quick 0); the busy share is recorded")
    p.add_argument("--init-reps", type=int, default=None, help="fresh processes for 'init' (default 3, quick 1)")
    p.add_argument("--results", default=None,
                   help="markdown file to append to (default benchmarks/RESULTS.md for full runs; "
                        "quick runs append only when this is given)")
    p.add_argument("--no-results", action="store_true", help="never append to RESULTS.md")
    args = p.parse_args(argv)
    args.systems = pick(args.only, SYSTEMS, ALIASES, "system")
    args.workload_list = pick(args.workloads, WORKLOADS, {"fib": ("fib15", "fib16")}, "workload")
    if args.python is None:
        args.python = DEFAULT_VENV_PY if os.path.exists(DEFAULT_VENV_PY) else sys.executable
    if args.timeout is None:
        args.timeout = 90.0 if args.quick else 300.0
    if args.idle_wait is None:
        args.idle_wait = 0.0 if args.quick else 60.0
    if args.init_reps is None:
        args.init_reps = 1 if args.quick else 3
    if args.results is None and not args.quick:
        args.results = os.path.join(HERE, "RESULTS.md")
    if args.no_results:
        args.results = None
    return args


def pick(text, table, aliases, what):
    if not text:
        return list(table)
    chosen = []
    for raw in text.split(","):
        name = raw.strip().lower()
        names = aliases.get(name, name)
        for name in [names] if isinstance(names, str) else names:
            if name not in table:
                sys.exit(f"unknown {what} {raw!r}; choose from {', '.join(table)}")
            chosen.append(name)
    return [k for k in table if k in chosen]  # keep the canonical order


def command(args, system, workload):
    spec = SYSTEMS[system]
    cmd = [args.python, *spec.get("launcher", []), os.path.join(PEERS, spec["runner"]),
           "--workload", workload, "--spawn-epoch", f"{time.time():.6f}",
           "--dump-after", f"{max(1.0, args.timeout - 5):.0f}"]
    if args.quick:
        cmd.append("--quick")
    return cmd


def peer_env(system):
    env = dict(os.environ)
    path = [PEERS]
    if system == "actorscoop":
        # The working tree wins over a stale editable install (an editable install
        # made before actorscoop/__init__.py existed maps it as a namespace package).
        path.append(REPO)
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def parse_output(output):
    """(result dict or None, fib start epoch or None, teardown note or None)."""
    result, fib_start, teardown = None, None, "no teardown_done mark"
    for line in output.splitlines():
        if line.startswith(RESULT_MARK):
            try:
                result = json.loads(line[len(RESULT_MARK):])
            except ValueError:
                pass
        elif line.startswith(PROGRESS_MARK + "fib_start "):
            fib_start = float(line.split()[-1])
        elif line.startswith(PROGRESS_MARK + "teardown_error "):
            teardown = line[len(PROGRESS_MARK + "teardown_error "):]
        elif line.startswith(PROGRESS_MARK + "teardown_done") and teardown == "no teardown_done mark":
            teardown = None
            parts = line.split()
            if result is not None and len(parts) > 2:  # how long the runtime's shutdown took
                result.setdefault("extra", {})["shutdown_s"] = float(parts[2])
    return result, fib_start, teardown


def wait_idle(limit_s, threshold=25.0):
    """Wait (up to ``limit_s``) for other work on the machine to calm down.

    Returns the CPU busy percentage seen last (over 1 s), for the record.
    """
    deadline = time.monotonic() + limit_s
    busy = psutil.cpu_percent(interval=0.5)
    while busy > threshold and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=1.0)
    return busy


def run_cell(args, system, workload, rep=0):
    busy = wait_idle(args.idle_wait)
    log_path = os.path.join(OUT, "logs", f"{system}_{workload}{'_' + str(rep) if rep else ''}.log")
    cmd = command(args, system, workload)
    watch = _watchdog.run_guarded(cmd, env=peer_env(system), cwd=HERE, timeout_s=args.timeout,
                                  mem_limit_bytes=args.mem_limit_gb * 2**30, log_path=log_path,
                                  mem_metric=args.mem_metric)
    killed_at = time.time()
    result, fib_start, teardown = parse_output(watch.pop("output"))
    cell = {"system": system, "workload": workload, "log": os.path.relpath(log_path, REPO),
            "timeout_s": args.timeout, "mem_limit_bytes": args.mem_limit_gb * 2**30,
            "mem_metric": args.mem_metric, "cpu_busy_before_pct": busy,
            "loadavg_after": os.getloadavg()[0], **watch}
    if result is not None and result.get("status") == "ok" and teardown:
        # Measured fine, then shutdown failed, hung (timeout) or blew the memory guard.
        cell["teardown_problem"] = (f"{watch['status']} during shutdown" if watch["status"] != "exited"
                                    else teardown)
        watch["status"] = "exited"
    if watch["status"] in ("timeout", "OOM-killed"):
        cell["status"] = watch["status"]
        if fib_start:
            cell["lower_bound_s"] = killed_at - fib_start
        elif workload == "init":
            cell["lower_bound_s"] = watch["elapsed_s"]
    elif result is None:
        cell["status"] = "error"
        tail = [ln for ln in open(log_path, errors="replace").read().splitlines() if ln.strip()]
        cell["error"] = f"exit code {watch['returncode']} without a result" + (
            f"; last line: {tail[-1][:200]}" if tail else "")
    else:
        cell.update({k: v for k, v in result.items() if k not in ("system", "workload")})
        watch_status = cell.pop("status", "error")
        cell["status"] = "ok" if watch_status == "ok" else "error"
        if workload == "init":  # the whole process, from its spawn to its exit
            cell.setdefault("extra", {})["whole_process_s"] = watch["elapsed_s"]
    return cell


def run_init(args, system):
    """'init' is measured in several fresh processes; the median is reported."""
    cells = [run_cell(args, system, "init", rep) for rep in range(args.init_reps)]
    ok = [c for c in cells if c["status"] == "ok"]
    if not ok:
        return cells[0]
    best = dict(ok[0])
    best["runs_s"] = [c["value"] for c in ok]
    best["value"] = statistics.median(best["runs_s"])
    starts = [c["extra"].get("process_start_to_first_result_s") for c in ok]
    if all(s is not None for s in starts):
        best["process_start_s"] = statistics.median(starts)
    best["extra"] = dict(best.get("extra") or {})
    for key in ("init_to_first_result_s", "whole_process_s", "shutdown_s"):
        values = [c["extra"].get(key) for c in ok if c["extra"].get(key) is not None]
        if values:
            best["extra"][key] = statistics.median(values)
    best["peak_rss_bytes"] = max(c["peak_rss_bytes"] for c in cells)
    best["peak_pss_bytes"] = max((c.get("peak_pss_bytes") or 0) for c in cells) or None
    best["peak_procs"] = max(c["peak_procs"] for c in cells)
    best["stray_killed"] = sum(c["stray_killed"] for c in cells)
    best["cpu_busy_before_pct"] = max(c["cpu_busy_before_pct"] for c in cells)
    return best


def short(cell):
    if cell["status"] == "ok":
        return f"{_report.fmt_value(cell['value'], cell['unit'])} {cell['unit']}"
    return _report.cell_text(cell)


def compile_bytecode():
    """Compile the measured tree's bytecode first, as ``pip install`` does for a user: with
    PYTHONDONTWRITEBYTECODE set (these machines set it) an editable checkout would otherwise
    compile every module in every fresh process, and start-up would measure the compiler."""
    import compileall
    compileall.compile_dir(os.path.join(REPO, "actorscoop"), quiet=1)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    compile_bytecode()
    if not _watchdog.become_subreaper():
        print("warning: could not become a child subreaper; orphaned daemons may escape cleanup",
              file=sys.stderr)
    info = _sysinfo.collect(args.python, REPO)
    started = dt.datetime.now(dt.timezone.utc)
    info["loadavg_start"] = os.getloadavg()
    print(f"# {started:%Y-%m-%d %H:%M} UTC — {_sysinfo.headline(info)}")
    print(f"# {_sysinfo.versions_line(info)}")
    print(f"# peers run with {args.python}; timeout {args.timeout:.0f} s, "
          f"memory guard {args.mem_limit_gb:g} GiB summed {args.mem_metric.upper()} per cell"
          f"{' (quick)' if args.quick else ''}")
    results = {}
    try:
        for workload in args.workload_list:
            results[workload] = {}
            for system in args.systems:
                if WORKLOADS[workload]["nested"] and not SYSTEMS[system]["nests"]:
                    cell = {"system": system, "workload": workload, "status": "n/a"}
                else:
                    t0 = time.monotonic()
                    print(f"  {workload:10s} {system:10s} ...", end="", flush=True)
                    cell = run_init(args, system) if workload == "init" else run_cell(args, system, workload)
                    print(f" {short(cell)}  [{time.monotonic() - t0:.0f} s]", flush=True)
                results[workload][system] = cell
    finally:
        _watchdog.kill_tree()  # nothing of ours survives, even on Ctrl-C
        _watchdog.reap_zombies()
    info["loadavg_end"] = os.getloadavg()
    write_outputs(args, info, started, results)


def busy_cells(results):
    return sorted(f"{SYSTEMS[s]['label']}/{w}" for w, cells in results.items()
                  for s, c in cells.items() if (c.get("cpu_busy_before_pct") or 0) > 25)


def render(args, info, started, results):
    mode = "quick smoke run" if args.quick else "full run"
    parts = [f"## {started:%Y-%m-%d %H:%M} UTC — {_sysinfo.headline(info)}", "",
             f"- Versions: {_sysinfo.versions_line(info)}",
             f"- Mode: {mode}; per-cell timeout {args.timeout:.0f} s; memory guard "
             f"{args.mem_limit_gb:g} GiB (summed {args.mem_metric.upper()} of the cell's process "
             f"tree); each cell in a fresh process.",
             f"- Machine load: 1-min load average {info['loadavg_start'][0]:.2f} at start, "
             f"{info['loadavg_end'][0]:.2f} at end (2 cores; other work on the machine "
             f"slows every system). Cells started while other processes kept the CPUs over 25% "
             f"busy: {', '.join(busy_cells(results)) or 'none'}.", ""]
    for workload, cells in results.items():
        parts += [_report.table(workload, cells), ""]
    parts += ["Notes:",
              "- *actorscoop advantage* = peer/actorscoop for times, actorscoop/peer for rates: "
              "above 1× actorscoop is better.",
              "- Memory in the notes is the peak over the cell's whole process tree: summed PSS "
              "(shared pages split between the processes mapping them: the real footprint) and, "
              "in brackets, summed RSS (shared pages, e.g. a shared-memory object store, counted "
              "once per process).",
              "- ProcessPoolExecutor, multiprocessing.Pool and loky cannot nest tasks (a waiting "
              "parent holds one of the two workers: deadlock), so fib is n/a for them.",
              "- Dask submits with `pure=False` (no deduplication of identical calls); nested "
              "fib uses `worker_client()`. Its client batches messages to the scheduler every "
              "10 ms (`BatchedSend(interval=\"10ms\")` in distributed/client.py), which sets the "
              "floor of its round trip.",
              "- SCOOP runs as `python -m scoop -n 2`; no compatibility patch was needed on "
              "Python 3.11. Its init value includes the launcher and interpreter start. SCOOP "
              "runs futures it is waiting on inside the waiting process (greenlets), so its "
              "one-at-a-time round trip never leaves the root process: it measures in-process "
              "scheduling, not IPC (see the probe-pid note under throughput).",
              "- Cells that did not finish show `timeout`/`OOM-killed`; a target against such a "
              "peer uses the time already spent in its timed run as a lower bound.", ""]
    return "\n".join(parts)


def write_outputs(args, info, started, results):
    stamp = f"{started:%Y%m%dT%H%M%S}"
    raw = {"started_utc": started.isoformat(), "quick": args.quick, "machine": info,
           "timeout_s": args.timeout, "mem_limit_gb": args.mem_limit_gb, "results": results}
    for name in (f"run-{stamp}.json", "latest.json"):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(raw, f, indent=1, default=str)
    text = render(args, info, started, results)
    print()
    print(text)
    if args.results:
        new = not os.path.exists(args.results)
        with open(args.results, "a") as f:
            if new:
                f.write("# actorscoop benchmark results\n\nOne section per run of "
                        "`python benchmarks/run.py`, newest last. See README.md.\n\n")
            f.write(text + "\n")
        print(f"appended to {os.path.relpath(args.results, os.getcwd())}")
    print(f"raw numbers: {os.path.relpath(os.path.join(OUT, f'run-{stamp}.json'), os.getcwd())}")


if __name__ == "__main__":
    main()
