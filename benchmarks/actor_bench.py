#!/usr/bin/env python
"""Actor benchmarks (issue 4): actorscoop against Ray.

    python benchmarks/actor_bench.py                 # full run: 3 fresh processes per cell,
                                                     # appends to benchmarks/RESULTS-store-actors.md
    python benchmarks/actor_bench.py --quick         # smoke run (prints only)

Workloads, on `init(num_cpus=2)` with default actor options (a `Counter` actor whose
`incr()` adds 1 and returns the count):

- sequential: 5,000 calls on one actor, each awaited before the next (200 warm-up calls).
- pipelined:  5,000 calls on one actor submitted at once, then one get; the results are
              checked to be in submission order; median of 3 rounds after 500 warm-up calls.
- one_to_n:   the driver calls 4 actors round-robin, 4,000 calls pipelined, then one get;
              median of 3 rounds.
- n_to_n:     4 tasks, each with its own actor's handle, make 1,000 pipelined calls each
              (4,000 in all), timed from submitting the 4 tasks to their results; after a
              warm-up round of 50 calls each; median of 3 rounds.

The driver, cell isolation and tables are store_bench.py's (the runners live in
peers_actor/).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import store_bench as sb  # noqa: E402

TITLES = {
    "sequential": ("A1. Sequential calls on one actor (call, wait, call…)",
                   "5,000 calls, each awaited before the next, after 200 warm-up calls; calls/s "
                   "over the whole loop (a few slow calls weigh in), with the per-call median "
                   "and p99 latency."),
    "pipelined": ("A2. Pipelined calls on one actor (submit all, then get)",
                  "5,000 calls submitted at once, then one get; results checked to be in "
                  "submission order; median of 3 rounds after 500 warm-up calls."),
    "one_to_n": ("A3. 1:n — one driver calling 4 actors round-robin, pipelined",
                 "4,000 calls spread round-robin over 4 actors, submitted at once, then one "
                 "get; median of 3 rounds after 50 warm-up calls per actor."),
    "n_to_n": ("A4. n:n — 4 tasks, each calling its own actor 1,000 times",
               "4 tasks each make 1,000 pipelined calls to their own actor (4,000 calls), "
               "timed from submitting the tasks to their 4 results; median of 3 rounds after "
               "a 50-call warm-up round (actors and caller workers up)."),
}

TARGETS = {"sequential": 3.0, "pipelined": 3.0}


def brief(workload, cell):
    x = cell["metrics"]
    s = f"{x['value']:,.0f} calls/s"
    if workload == "sequential":
        s += f" (median {x['median_us']:.0f} µs, p99 {x['p99_us']:.0f} µs)"
    return s


def table(workload, by):
    title, what = TITLES[workload]
    A, R = "actorscoop", "ray"
    a, r = sb.m(by, A, "value"), sb.m(by, R, "value")
    out = [f"### {title}", "", what, "",
           "| measure | actorscoop | Ray | actorscoop advantage over Ray |", "|---|---:|---:|---:|",
           f"| calls/s | {sb.fmt(a, '/s')} | {sb.fmt(r, '/s')} | {sb.ratio(sb.adv(a, r, 'higher'))} |"]
    if workload == "sequential":
        for label, key in (("per-call latency, median", "median_us"), ("per-call latency, p99", "p99_us")):
            va, vr = sb.m(by, A, key), sb.m(by, R, key)
            out.append(f"| {label} | {sb.fmt(va, 'µs')} | {sb.fmt(vr, 'µs')} | {sb.ratio(sb.adv(va, vr, 'lower'))} |")
    out += ["", f"- calls/s per run: actorscoop {sb.runs_of(by, A, 'value', '')}; Ray {sb.runs_of(by, R, 'value', '')}."]
    adv = sb.adv(a, r, "higher")
    if workload in TARGETS:
        f = TARGETS[workload]
        out.append(f"- Target: ≥ {f:g}× Ray's calls/s: "
                   f"{sb.verdict(None if adv is None else adv >= f, f'{sb.ratio(adv)}, needs {f:.2f}×')}")
    else:
        out.append("- Target: call pattern reported (no bound): **REPORTED**")
    return out


NOTES = [
    "Notes:",
    "- *actorscoop advantage over Ray* = actorscoop/Ray for rates, Ray/actorscoop for "
    "latencies: above 1× actorscoop is better.",
    "- Both run `init(num_cpus=2)` with default actor options (Ray: 1 CPU to schedule, 0 to "
    "run; actorscoop the same way); Ray otherwise with its defaults (dashboard on, "
    "`log_to_driver=False`, `RAY_USAGE_STATS_ENABLED=0`).",
]

SUITE = {
    "name": "actors", "title": "actors (issue 4)", "doc": __doc__, "peers": "peers_actor",
    "runners": {"actorscoop": "asc_actor_peer.py", "ray": "ray_actor_peer.py"},
    "workloads": ["sequential", "pipelined", "one_to_n", "n_to_n"],
    "brief": brief, "table": table, "notes": NOTES,
}

if __name__ == "__main__":
    sys.exit(sb.run_suite(SUITE))
