"""Actor workloads (issue 4), shared by the actor runners.

Each runner (``<system>_actor_peer.py``) defines an adapter and calls :func:`main`;
``benchmarks/actor_bench.py`` starts one fresh runner process per (system, workload,
repetition). One ``RESULT_MARK`` JSON line per run, like the issue-2 runners.

Adapter interface:

- ``name``, ``version()``, ``setup()`` (``init(num_cpus=2)``), ``teardown()``
- ``counter()`` -> handle of a new ``Counter`` actor (default actor options);
  ``incr(h)`` -> ref of ``h.incr.remote()`` (adds 1, returns the new count)
- ``get(ref_or_refs)``
- ``callers(handles, n)`` -> refs of one task per handle; each task makes ``n``
  pipelined calls to its actor and returns the last count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
from _cell import PROGRESS_MARK, RESULT_MARK, emit, run_cell  # noqa: E402,F401
WORKLOADS = ["sequential", "pipelined", "one_to_n", "n_to_n"]
N_ACTORS = 4



def w_sequential(ad, quick):
    n = 1000 if quick else 5000
    h = ad.counter()
    for _ in range(200):
        ad.get(ad.incr(h))
    lat = []
    clock = time.perf_counter
    t0 = clock()
    for _ in range(n):
        t = clock()
        v = ad.get(ad.incr(h))
        lat.append(clock() - t)
    dt = clock() - t0
    if v != 200 + n:
        raise RuntimeError(f"last count {v}, expected {200 + n}")
    lat.sort()
    return {"value": n / dt, "unit": "calls/s", "n": n, "total_s": dt,
            "median_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[int(len(lat) * 0.99)] * 1e6}


def w_pipelined(ad, quick):
    n = 1000 if quick else 5000
    h = ad.counter()
    ad.get([ad.incr(h) for _ in range(500)])
    rates, submits = [], []
    done = 500
    for _ in range(1 if quick else 3):
        t0 = time.perf_counter()
        refs = [ad.incr(h) for _ in range(n)]
        t1 = time.perf_counter()
        vals = ad.get(refs)
        dt = time.perf_counter() - t0
        if vals != list(range(done + 1, done + n + 1)):
            raise RuntimeError("calls from one caller did not run in submission order")
        done += n
        rates.append(n / dt)
        submits.append(t1 - t0)
    return {"value": statistics.median(rates), "unit": "calls/s", "n": n, "rates": rates,
            "submit_phase_s": submits}


def w_one_to_n(ad, quick):
    per = 250 if quick else 1000
    hs = [ad.counter() for _ in range(N_ACTORS)]
    ad.get([ad.incr(h) for h in hs for _ in range(50)])
    rates = []
    done = 50
    for _ in range(1 if quick else 3):
        t0 = time.perf_counter()
        refs = [ad.incr(hs[i % N_ACTORS]) for i in range(per * N_ACTORS)]
        vals = ad.get(refs)
        dt = time.perf_counter() - t0
        done += per
        if vals[-N_ACTORS:] != [done] * N_ACTORS:
            raise RuntimeError(f"last counts {vals[-N_ACTORS:]}, expected {done}")
        rates.append(per * N_ACTORS / dt)
    return {"value": statistics.median(rates), "unit": "calls/s", "actors": N_ACTORS,
            "calls": per * N_ACTORS, "rates": rates}


def w_n_to_n(ad, quick):
    per = 250 if quick else 1000
    hs = [ad.counter() for _ in range(N_ACTORS)]
    ad.get(ad.callers(hs, 50))           # warm-up: actors up, caller workers started
    done = 50
    rates = []
    for _ in range(1 if quick else 3):
        t0 = time.perf_counter()
        lasts = ad.get(ad.callers(hs, per))
        dt = time.perf_counter() - t0
        done += per
        if lasts != [done] * N_ACTORS:
            raise RuntimeError(f"last counts {lasts}, expected {done}")
        rates.append(per * N_ACTORS / dt)
    return {"value": statistics.median(rates), "unit": "calls/s", "actors": N_ACTORS,
            "calls": per * N_ACTORS, "rates": rates}


FUNCS = {"sequential": w_sequential, "pipelined": w_pipelined, "one_to_n": w_one_to_n,
         "n_to_n": w_n_to_n}


def main(ad, argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    payload = {"system": ad.name, "workload": args.workload, "quick": args.quick}

    def measure():
        payload["version"] = ad.version()
        ad.setup()
        return FUNCS[args.workload](ad, args.quick)
    return run_cell(payload, measure, ad.teardown)
