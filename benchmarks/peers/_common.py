"""Shared measurement loop for the peer runners.

Each runner (``<system>_peer.py``) defines a small adapter object and calls
:func:`main`. The driver (``benchmarks/run.py``) starts one fresh runner
process per (system, workload) cell, so a crash, timeout or OOM kill of one
cell never costs the others. The runner prints exactly one line starting with
``RESULT_MARK`` followed by a JSON object; everything else on stdout/stderr is
log noise that the driver saves to ``benchmarks/out/logs/``.

Adapter interface (all methods run in the runner's main process):

- ``name``: system name as shown in the tables.
- ``version()``: version string of the system under test.
- ``setup()``: start the runtime / pool / cluster.
- ``teardown()``: stop it (must not leave processes behind).
- ``one()``: submit one no-op task and wait for its result.
- ``submit(n, fn=noop)`` -> handles; ``gather(handles)`` -> list of n results.
- ``whoami``: the task function returning ``os.getpid()`` (used once, after the
  throughput runs, to report how many processes ran the tasks).
- ``fib(n)`` -> int, or ``None`` attribute when the system cannot nest
  (the driver then never starts the cell; it shows "n/a (cannot nest)").
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import statistics
import sys
import time
import traceback

RESULT_MARK = "@@BENCH_RESULT "
# "@@BENCH_MARK fib_start <epoch>" is printed just before the first timed fib
# run, so that the driver can give a lower bound when the run is killed.
PROGRESS_MARK = "@@BENCH_MARK "

FIB_VALUES = [0, 1]
while len(FIB_VALUES) < 40:
    FIB_VALUES.append(FIB_VALUES[-1] + FIB_VALUES[-2])

# Sizes: (full, quick)
ROUNDTRIP_WARMUP = (200, 20)
ROUNDTRIP_N = (2000, 200)
THROUGHPUT_WARMUP = (500, 100)
THROUGHPUT_N = (10_000, 1_000)
THROUGHPUT_REPS = (3, 1)
FIB_MAX_REPS = (3, 1)
FIB_REPEAT_BUDGET_S = 20.0


def emit(payload: dict) -> None:
    """Print the one result line the driver looks for."""
    sys.stdout.flush()
    sys.stdout.write(RESULT_MARK + json.dumps(payload) + "\n")
    sys.stdout.flush()


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[k]


def measure_init(adapter, spawn_epoch):
    """init()/pool creation -> first result, in this fresh process.

    Adapters whose runtime is started by a launcher before any user code runs
    (SCOOP's ``python -m scoop``) set ``init_from_process_start = True``: their
    value is then process start -> first result, which includes the launcher.
    """
    t0 = time.perf_counter()
    adapter.setup()
    adapter.one()
    t1 = time.perf_counter()
    extra = {"init_to_first_result_s": t1 - t0}
    if spawn_epoch:
        extra["process_start_to_first_result_s"] = time.time() - spawn_epoch
    # What a user's short script pays: from the interpreter's start (imports included) to
    # the first result; the driver also records the whole process and its shutdown.
    value = extra.get("process_start_to_first_result_s", t1 - t0)
    return {"value": value, "unit": "s", "extra": extra}


def measure_roundtrip(adapter, quick):
    q = 1 if quick else 0
    for _ in range(ROUNDTRIP_WARMUP[q]):
        adapter.one()
    samples = []
    clock = time.perf_counter
    for _ in range(ROUNDTRIP_N[q]):
        t0 = clock()
        adapter.one()
        samples.append(clock() - t0)
    us = [s * 1e6 for s in samples]
    return {
        "value": statistics.median(us),
        "unit": "µs",
        "extra": {
            "median_us": statistics.median(us),
            "p90_us": percentile(us, 90),
            "p99_us": percentile(us, 99),
            "mean_us": statistics.fmean(us),
            "n": len(us),
            "warmup": ROUNDTRIP_WARMUP[q],
        },
    }


def measure_throughput(adapter, quick):
    q = 1 if quick else 0
    n = THROUGHPUT_N[q]
    results = adapter.gather(adapter.submit(THROUGHPUT_WARMUP[q]))
    assert len(results) == THROUGHPUT_WARMUP[q]
    rates, submit_times, totals = [], [], []
    for _ in range(THROUGHPUT_REPS[q]):
        t0 = time.perf_counter()
        handles = adapter.submit(n)
        t1 = time.perf_counter()
        results = adapter.gather(handles)
        t2 = time.perf_counter()
        if len(results) != n:
            raise RuntimeError(f"gathered {len(results)} results, expected {n}")
        rates.append(n / (t2 - t0))
        submit_times.append(t1 - t0)
        totals.append(t2 - t0)
    extra = {}
    if hasattr(adapter, "whoami"):  # where did the tasks run? (SCOOP runs no-ops in the driver)
        pids = adapter.gather(adapter.submit(200, adapter.whoami))
        extra = {"distinct_pids": len(set(pids)), "pids_include_driver": os.getpid() in pids}
    return {
        "value": statistics.median(rates),
        "unit": "tasks/s",
        "extra": {
            **extra,
            "n_tasks": n,
            "reps": len(rates),
            "rates": rates,
            "submit_phase_s": submit_times,
            "total_s": totals,
        },
    }


def measure_fib(adapter, n, quick):
    q = 1 if quick else 0
    expected = FIB_VALUES[n]
    warm = adapter.fib(4)
    if warm != FIB_VALUES[4]:
        raise RuntimeError(f"fib(4) returned {warm!r}")
    times = []
    spent = 0.0
    print(f"{PROGRESS_MARK}fib_start {time.time():.6f}", flush=True)
    while len(times) < FIB_MAX_REPS[q] and (not times or spent < FIB_REPEAT_BUDGET_S):
        t0 = time.perf_counter()
        got = adapter.fib(n)
        dt = time.perf_counter() - t0
        if got != expected:
            raise RuntimeError(f"fib({n}) returned {got!r}, expected {expected}")
        times.append(dt)
        spent += dt
    tasks = 2 * FIB_VALUES[n + 1] - 1  # calls in the naive recursion tree
    return {
        "value": statistics.median(times),
        "unit": "s",
        "extra": {"runs_s": times, "tasks_per_run": tasks,
                  "tasks_per_s": tasks / statistics.median(times)},
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True,
                   choices=["init", "roundtrip", "throughput", "fib15", "fib16"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--spawn-epoch", type=float, default=0.0,
                   help="time.time() at which the driver started this process")
    p.add_argument("--dump-after", type=float, default=0.0,
                   help="dump every thread's stack to stderr after this many seconds "
                        "(the driver sets it just below its timeout, to show where a hang is)")
    return p.parse_args(argv)


def main(adapter, argv=None):
    """Run one workload with ``adapter`` and emit the result line.

    The result is printed *before* teardown, so a runtime that hangs or
    crashes while shutting down still yields its numbers (the driver kills
    the tree at its timeout and notes it).
    """
    args = parse_args(argv)
    if args.dump_after > 0:
        faulthandler.dump_traceback_later(args.dump_after, exit=False)
    payload = {"system": adapter.name, "workload": args.workload, "quick": args.quick}
    try:
        payload["version"] = adapter.version()
        if args.workload == "init":
            payload.update(measure_init(adapter, args.spawn_epoch))
        else:
            adapter.setup()
            if args.workload == "roundtrip":
                payload.update(measure_roundtrip(adapter, args.quick))
            elif args.workload == "throughput":
                payload.update(measure_throughput(adapter, args.quick))
            else:
                payload.update(measure_fib(adapter, int(args.workload[3:]), args.quick))
        payload["status"] = "ok"
    except BaseException as exc:  # report any failure as a result row
        first = (str(exc).strip().splitlines() or [""])[0]
        payload["status"] = "error"
        payload["error"] = f"{type(exc).__name__}: {first}"[:300]
        payload["traceback"] = traceback.format_exc()[-4000:]
    emit(payload)
    faulthandler.cancel_dump_traceback_later()
    t0 = time.perf_counter()
    try:
        adapter.teardown()
    except Exception as exc:  # logged; the driver still cleans up by pid
        print(f"{PROGRESS_MARK}teardown_error {type(exc).__name__}: {exc}"[:400], flush=True)
    print(f"{PROGRESS_MARK}teardown_done {time.perf_counter() - t0:.6f}", flush=True)
    return 0
