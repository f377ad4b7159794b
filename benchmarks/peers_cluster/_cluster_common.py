"""Multi-node workloads (issue 6), shared by the cluster runners.

Each runner (``<system>_cluster_peer.py``) defines a small adapter and calls
:func:`main`. ``benchmarks/cluster_bench.py`` starts one fresh runner process per
(system, workload, repetition); the runner starts its own loopback cluster, measures,
prints exactly one line starting with ``RESULT_MARK`` and a JSON object, then shuts the
cluster down and prints ``teardown_done`` (or ``teardown_error``).

Adapter interface (node 0 is the head; the driver runs on it):

- ``name``, ``version()``
- ``start(nodes, object_store_memory=None, node_timeout=None)`` -> node ids (hex
  strings) in the order of ``nodes`` (each a dict with ``num_cpus`` and optional
  ``resources``); ``object_store_memory`` applies to every node; ``node_timeout`` is the
  heartbeat timeout where the system has one to set (None: its default)
- ``driver_node()`` -> the driver's node id; ``shutdown()``: driver and every node
- ``where()`` -> ref of a no-op task that returns the id of the node it ran on
- ``probe(i, victim, marker_dir, short_s)`` -> ref of a task running :func:`probe_body`
- ``make(nbytes, seed)`` -> ref of a task that needs ``{"b": 1}`` and returns
  :func:`make_body`'s tuple
- ``wait(refs, num_returns, timeout)`` -> (ready, not_ready), without fetching values
- ``get(refs, timeout)``
- ``kill_node(index)``: SIGKILL that node's raylet and reap it
- ``node_dead(index)`` -> whether the control plane reports that node dead
- ``heartbeat`` (text): how dead nodes are detected, for the notes
- ``sleeper(seconds)`` -> ref of a task that sleeps that long (balance)
- ``tree(depth, seconds)`` -> ref of a task that sleeps, then submits two ``tree(depth - 1)``
  and gets them (balance, nested)
- ``make_marked(nbytes, seed, marker_dir)`` -> ref of a task that needs ``{"b": 1}`` and runs
  :func:`made_body` (recover)
- ``made(ref, timeout)``: block until the task's result is ready where it was made, without
  moving it to the driver's node (recover)
- ``counter()`` -> handle of an actor pinned to the node with ``{"b": 1}`` (no CPU held);
  ``incr(handle)`` -> ref of a call that adds 1 to its count and returns it (actor)
- optional ``route_stats()`` -> dict of the system's own counters about how actor calls
  travel (recorded beside the figures)
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
from _cell import PROGRESS_MARK, RESULT_MARK, emit, run_cell  # noqa: E402,F401
WORKLOADS = ["throughput", "transfer", "deadnode", "balance", "recover", "actor"]

MiB = 2**20
GB = 1e9
LETTERS = "ABCD"                 # node 0 (head, the driver's node) is A
MIN_SHARE = 0.05                 # "every node does a share": each runs >= 5% of the tasks
TASKS = (20_000, 2_000)          # C1 (full, quick)
WARMUP_TASKS = (500, 200)
TRANSFER_MIB = (1024, 64)        # C2 (full, quick)
STORE_HEADROOM = 256 * MiB       # C2 store size per node = object + this
ASC_NODE_TIMEOUT = 2.0           # C3: actorscoop's heartbeat timeout for the run
WARMUP_ROUNDS = 10               # rounds of 8 sleeping tasks until every node has run one
PROBES = 12                      # C3: tasks per round
PROBE_SHORT_S = 0.3              # C3: a probe's sleep away from the victim (first attempts)
PROBE_ROUNDS = 5                 # C3: rounds tried before giving up on a victim start
VICTIM_START_DEADLINE_S = 60.0
AFTER_KILL_DEADLINE_S = 60.0     # C3: how long to wait for results and the death report
WAIT_TIMEOUT_S = 600.0           # blocking calls; the driver's watchdog normally ends sooner
BALANCE_CPUS = 4                 # balance: 4 nodes of 1 CPU
HEAVY_SEEDS = (1, 2, 3)          # balance: heavy-tailed shapes, one per seed
TREE_DEPTH, TREE_S = 5, 0.1      # balance: a binary tree of nested tasks, each sleeping TREE_S
RECOVER_MIB = (100, 16)          # recover: the lost object (full, quick)
ACTOR_CALLS = (20_000, 2_000)    # actor: calls in flight at once (full, quick)
ACTOR_ROUND_TRIPS = (1_000, 200)  # actor: calls one after the other (full, quick)
ACTOR_WARMUP = 500               # actor: calls before timing (the route settles)


# --- task bodies (run in the workers of both systems) ------------------------------------

def make_body(nbytes, seed, node):
    """A random uint8 array of ``nbytes``, its crc32, the node and the wall time of return."""
    import zlib

    import numpy as np
    a = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)
    return a, zlib.crc32(a), node, time.time()


def made_body(nbytes, seed, node, marker_dir):
    """:func:`make_body`, leaving ``made-<node>-<pid>`` in ``marker_dir`` first (which node
    made it, and how many times it was made)."""
    open(os.path.join(marker_dir, f"made-{node}-{os.getpid()}"), "w").close()
    return make_body(nbytes, seed, node)


def probe_body(i, node, victim, marker_dir, short_s):
    """On the victim node: leave ``started-<i>-<pid>`` in ``marker_dir`` and sleep (to be
    killed there); elsewhere: sleep ``short_s``, except for the retry of an attempt that
    started on the victim, which returns at once (so the time to its result is the time
    to detect the loss and run it again). Returns ``(i, node)``."""
    if node == victim:
        open(os.path.join(marker_dir, f"started-{i}-{os.getpid()}"), "w").close()
        time.sleep(300)
    elif not marker_dir or not any(n.startswith(f"started-{i}-") for n in markers(marker_dir)):
        time.sleep(short_s)
    return i, node


# --- pure helpers -----------------------------------------------------------------------

def node_counts(results, ids):
    """Tasks per node, in node order, and how many came from a node not in ``ids``."""
    c = Counter(results)
    return [c.get(i, 0) for i in ids], sum(v for k, v in c.items() if k not in ids)


def share_metrics(counts, min_share=MIN_SHARE):
    """Per-node counts and shares as flat metrics (letters A, B, ... in node order)."""
    total = sum(counts) or 1
    out = {}
    for letter, n in zip(LETTERS, counts):
        out[f"tasks_{letter}"] = n
        out[f"share_{letter}_pct"] = 100.0 * n / total
    out["nodes_used"] = sum(1 for n in counts if n)
    out["min_share_pct"] = 100.0 * min(counts) / total if counts else 0.0
    out["every_node_shares"] = bool(counts) and min(counts) >= min_share * total
    return out


def sleep_body(seconds):
    time.sleep(seconds)
    return seconds


def heavy_tailed(seed, n=64, lo=0.02, hi=1.5, alpha=1.1):
    """``n`` task lengths from a Pareto tail (shape ``alpha``) from ``lo``, capped at ``hi``."""
    rng = random.Random(seed)
    return [round(min(hi, lo * (1.0 - rng.random()) ** (-1.0 / alpha)), 4) for _ in range(n)]


def balance_shapes():
    """(name, task lengths in submission order) of the balance workloads (issue 19)."""
    shapes = [(f"heavy-tailed, seed {s}", heavy_tailed(s)) for s in HEAVY_SEEDS]
    shapes += [("4 long first, then 60 short", [1.0] * 4 + [0.05] * 60),
               ("60 short first, then 4 long", [0.05] * 60 + [1.0] * 4),
               ("48 equal", [0.25] * 48)]
    return shapes


def ideal_makespan(lengths, cpus=BALANCE_CPUS):
    return max(sum(lengths) / cpus, max(lengths))


def online_makespan(lengths, cpus=BALANCE_CPUS):
    """The best online schedule when lengths are unknown: each task starts, in submission
    order, on the first CPU that frees, at no cost."""
    free = [0.0] * cpus
    for x in lengths:
        heapq.heapreplace(free, free[0] + x)
    return max(free)


def tree_bounds(depth=TREE_DEPTH, s=TREE_S, cpus=BALANCE_CPUS):
    """(ideal, online bound) of the nested tree: 2^(depth+1) - 1 tasks of ``s``, each
    submitting its two children when its own ``s`` is over, then waiting for them (its
    CPU free meanwhile). Ideal = max(work / CPUs, critical path (depth + 1) * s). The best
    online schedule starts each task, in submission order, on the first CPU that frees
    once its parent has submitted it, at no cost: at first only the root can run, then
    two tasks, so no schedule reaches the ideal (1.70 s against 1.575 s for depth 5 on 4
    CPUs); before 2026-12-07 the ideal stood for both."""
    n = 2 ** (depth + 1) - 1
    ideal = max(n * s / cpus, (depth + 1) * s)
    ready, free, seq, end = [(0.0, 0, depth)], [0.0] * cpus, 1, 0.0
    while ready:
        at, _seq, d = heapq.heappop(ready)
        done = max(at, heapq.heappop(free)) + s
        heapq.heappush(free, done)
        end = max(end, done)
        for _ in range(2 if d else 0):
            heapq.heappush(ready, (done, seq, d - 1))
            seq += 1
    return ideal, end


def markers(marker_dir):
    try:
        return [n for n in os.listdir(marker_dir) if n.startswith("started-")]
    except OSError:
        return []


def now():
    return time.perf_counter()


def warm_up(ad, ids):
    """Rounds of 8 tasks sleeping 0.2 s until every node has run one (workers started, the
    node known to the scheduler), at most WARMUP_ROUNDS; returns (rounds, nodes seen)."""
    seen = set()
    for rounds in range(1, WARMUP_ROUNDS + 1):
        seen.update(n for _, n in ad.get([ad.probe(i, "", "", 0.2) for i in range(8)], WAIT_TIMEOUT_S))
        if seen >= set(ids):
            break
    return rounds, len(seen & set(ids))


# --- workloads --------------------------------------------------------------------------

def w_throughput(ad, o):
    """C1: 4 nodes of 1 CPU; submit n no-op tasks from the driver on A, then get them all."""
    ids = ad.start([{"num_cpus": 1}] * 4)
    driver_on_a = ad.driver_node() == ids[0]
    warm_rounds, warm_nodes = warm_up(ad, ids)
    warm, _ = node_counts(ad.get([ad.where() for _ in range(o.warmup)], WAIT_TIMEOUT_S), ids)
    t0 = now()
    refs = [ad.where() for _ in range(o.tasks)]
    submit = now() - t0
    results = ad.get(refs, WAIT_TIMEOUT_S)
    total = now() - t0
    counts, unknown = node_counts(results, ids)
    if unknown:
        raise RuntimeError(f"{unknown} task(s) reported a node id outside the cluster")
    return {"value": o.tasks / total, "n_tasks": o.tasks, "total_s": total, "submit_s": submit,
            "driver_on_A": driver_on_a, "warmup_rounds": warm_rounds, "warmup_nodes": warm_nodes,
            "warmup_counts": warm, **share_metrics(counts)}


def w_transfer(ad, o):
    """C2: a random uint8 array made on node B (resource "b"), fetched by the driver on A."""
    import zlib
    nbytes = o.transfer_mib * MiB
    ids = ad.start([{"num_cpus": 1}, {"num_cpus": 1, "resources": {"b": 1}}],
                   object_store_memory=nbytes + STORE_HEADROOM)
    driver_on_a = ad.driver_node() == ids[0]
    ad.get(ad.make(1000, 0), WAIT_TIMEOUT_S)          # warm: B's worker, numpy imported
    ref = ad.make(nbytes, 1)
    ready, _ = ad.wait([ref], 1, WAIT_TIMEOUT_S)
    t_wait = time.time()
    if not ready:
        raise RuntimeError(f"the {o.transfer_mib} MiB task was not ready after {WAIT_TIMEOUT_S:.0f} s")
    arr, crc_b, node, t_return = ad.get(ref, WAIT_TIMEOUT_S)
    t_get = time.time()
    crc_a = zlib.crc32(arr)
    ok = bool(crc_a == crc_b and arr.nbytes == nbytes)
    del arr, ref
    total = t_get - t_return
    return {"value": nbytes / GB / total, "nbytes": nbytes, "return_to_usable_s": total,
            "return_to_ready_s": t_wait - t_return, "ready_to_got_s": t_get - t_wait,
            "get_after_wait_GBps": nbytes / GB / max(t_get - t_wait, 1e-9),
            "bytes_identical": ok, "made_on_B": node == ids[1], "driver_on_A": driver_on_a}


def w_deadnode(ad, o):
    """C3: SIGKILL the raylet of node D while one of a batch of tasks sleeps there; time
    until every task has finished on the surviving nodes (retried by default)."""
    ids = ad.start([{"num_cpus": 1}] * 4, node_timeout=o.node_timeout)
    victim = 3
    marker_dir = tempfile.mkdtemp(prefix="cluster-bench-")
    try:
        warm_rounds, warm_nodes = warm_up(ad, ids)
        refs, rounds = None, 0
        while not markers(marker_dir):
            if rounds == PROBE_ROUNDS:
                raise RuntimeError(f"no task started on the victim node in {PROBE_ROUNDS} rounds "
                                   f"of {PROBES} tasks")
            rounds += 1
            refs = [ad.probe(i, ids[victim], marker_dir, PROBE_SHORT_S) for i in range(PROBES)]
            deadline = time.monotonic() + VICTIM_START_DEADLINE_S
            while not markers(marker_dir):
                _, pending = ad.wait(refs, len(refs), 0.01)
                if not pending:
                    break  # all done without touching the victim: another round
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no task finished or started on the victim within "
                                       f"{VICTIM_START_DEADLINE_S:.0f} s")
        _, pending = ad.wait(refs, len(refs), 0)
        t_kill = time.monotonic()
        ad.kill_node(victim)
        kill_call = time.monotonic() - t_kill
        killed = sorted({int(n.split("-")[1]) for n in markers(marker_dir)})
        victims = [refs[i] for i in killed]  # the tasks running on the victim when it died
        done_s = dead_s = retried_s = None
        next_poll = 0.0
        while time.monotonic() - t_kill < AFTER_KILL_DEADLINE_S:
            if done_s is None:
                _, left = ad.wait(refs, len(refs), 0.05)
                if retried_s is None and not ad.wait(victims, len(victims), 0)[1]:
                    retried_s = time.monotonic() - t_kill
                if not left:
                    done_s = time.monotonic() - t_kill
            else:
                time.sleep(0.05)
            if dead_s is None and time.monotonic() >= next_poll:
                if ad.node_dead(victim):
                    dead_s = time.monotonic() - t_kill
                next_poll = time.monotonic() + 0.1
            if done_s is not None and dead_s is not None:
                break
        if done_s is None:
            raise RuntimeError(
                f"tasks not all finished {AFTER_KILL_DEADLINE_S:.0f} s after the kill; node "
                + (f"reported dead after {dead_s:.1f} s" if dead_s is not None else "never reported dead"))
        results = ad.get(refs, 30.0)
        counts, unknown = node_counts([n for _, n in results], ids)
        out = {"value": done_s, "retried_s": retried_s, "kill_call_s": kill_call, "rounds": rounds,
               "warmup_rounds": warm_rounds, "warmup_nodes": warm_nodes,
               "unfinished_at_kill": len(pending), "running_on_victim_at_kill": len(killed),
               "results_in_order": [i for i, _ in results] == list(range(PROBES)),
               "finished_elsewhere": counts[victim] == 0 and unknown == 0,
               "dead_reported": dead_s is not None,
               "tasks_A": counts[0], "tasks_B": counts[1], "tasks_C": counts[2]}
        if dead_s is not None:
            out["dead_report_s"] = dead_s
        return out
    finally:
        shutil.rmtree(marker_dir, ignore_errors=True)


def w_balance(ad, o):
    """Issue 19: 4 nodes of 1 CPU, tasks that sleep (so the cores are not the limit), one
    driver on A. For each shape: makespan from the first submit to the last result;
    efficiency = ideal makespan / measured, and measured against the best online schedule
    (``online_makespan``) = that bound / measured."""
    ids = ad.start([{"num_cpus": 1}] * BALANCE_CPUS)
    warm_rounds, warm_nodes = warm_up(ad, ids)
    out = {"warmup_rounds": warm_rounds, "warmup_nodes": warm_nodes, "shapes": []}
    rows = [(name, lengths, ideal_makespan(lengths), online_makespan(lengths)) for name, lengths in balance_shapes()]
    # The tree twice: first with the workers the warm-up left (each blocked task needs a
    # worker of its own, so most are started during it), then again with them started.
    rows.append((f"binary tree of nested tasks, depth {TREE_DEPTH}, cold", None, *tree_bounds()))
    rows.append((f"binary tree of nested tasks, depth {TREE_DEPTH}, again", None, *tree_bounds()))
    for name, lengths, ideal, bound in rows:
        t0 = now()
        if lengths is None:
            ad.get(ad.tree(TREE_DEPTH, TREE_S), WAIT_TIMEOUT_S)
        else:
            ad.get([ad.sleeper(x) for x in lengths], WAIT_TIMEOUT_S)
        took = now() - t0
        out["shapes"].append({"name": name, "makespan_s": took, "ideal_s": ideal, "bound_s": bound,
                              "efficiency": ideal / took, "vs_bound": bound / took,
                              "bound_efficiency": ideal / bound})
    out["value"] = min(r["vs_bound"] for r in out["shapes"])
    for i, r in enumerate(out["shapes"]):
        out[f"vs_bound_{i}"] = r["vs_bound"]
        out[f"efficiency_{i}"] = r["efficiency"]
    return out


def w_recover(ad, o):
    """Issue 19: a random uint8 array (100 MB) made on node B or C (resource "b"), whose only
    copy is there; the driver on A holds its ref without fetching it. That node's raylet is
    SIGKILLed; then the driver gets the array: its owner reruns the task on the node left
    (lineage reconstruction) and the driver fetches it. Reported: seconds from the kill to
    the array being usable (the node's death detection included, as each system does it)."""
    import zlib
    nbytes = o.recover_mib * MiB
    ids = ad.start([{"num_cpus": 1}, {"num_cpus": 1, "resources": {"b": 1}},
                    {"num_cpus": 1, "resources": {"b": 1}}],
                   object_store_memory=nbytes + STORE_HEADROOM, node_timeout=o.node_timeout)
    marker_dir = tempfile.mkdtemp(prefix="cluster-bench-")
    try:
        ad.get([ad.make(1000, 0) for _ in range(4)], WAIT_TIMEOUT_S)  # warm: workers, numpy
        ref = ad.make_marked(nbytes, 1, marker_dir)
        ad.made(ref, WAIT_TIMEOUT_S)
        [first] = [n.split("-")[1] for n in os.listdir(marker_dir)]
        victim = ids.index(first)
        t_kill = now()
        ad.kill_node(victim)
        arr, crc, node, _t = ad.get(ref, WAIT_TIMEOUT_S)
        took = now() - t_kill
        ok = bool(zlib.crc32(arr) == crc and arr.nbytes == nbytes)
        makers = [n.split("-")[1] for n in os.listdir(marker_dir)]
        return {"value": took, "nbytes": nbytes, "bytes_identical": ok, "made_first_on": "BC"[victim - 1],
                "runs": len(makers), "rebuilt_elsewhere": node != first and len(makers) == 2}
    finally:
        shutil.rmtree(marker_dir, ignore_errors=True)


def w_actor(ad, o):
    """Issue 19: an actor pinned to node B (resource "b"), called by the driver on A:
    calls/s with ``o.actor_calls`` in flight at once (submit all, then get all), and the
    round trip of one call at a time (``o.actor_round_trips`` calls)."""
    ids = ad.start([{"num_cpus": 1}, {"num_cpus": 1, "resources": {"b": 1}}])
    driver_on_a = ad.driver_node() == ids[0]
    h = ad.counter()
    ad.get([ad.incr(h) for _ in range(ACTOR_WARMUP)], WAIT_TIMEOUT_S)
    before = ad.route_stats() if hasattr(ad, "route_stats") else {}
    t0 = now()
    refs = [ad.incr(h) for _ in range(o.actor_calls)]
    submit = now() - t0
    counts = ad.get(refs, WAIT_TIMEOUT_S)
    total = now() - t0
    in_order = counts == list(range(ACTOR_WARMUP + 1, ACTOR_WARMUP + o.actor_calls + 1))
    trips = []
    for _ in range(o.actor_round_trips):
        t = now()
        ad.get(ad.incr(h), WAIT_TIMEOUT_S)
        trips.append(now() - t)
    trips.sort()
    after = ad.route_stats() if hasattr(ad, "route_stats") else {}
    out = {"value": o.actor_calls / total, "n_calls": o.actor_calls, "total_s": total,
           "submit_s": submit, "results_in_order": in_order, "driver_on_A": driver_on_a,
           "rtt_median_ms": 1e3 * trips[len(trips) // 2],
           "rtt_p99_ms": 1e3 * trips[min(len(trips) - 1, int(0.99 * len(trips)))],
           "n_round_trips": len(trips)}
    for key in after:
        out[f"route_{key}"] = after[key] - before.get(key, 0)
    return out


FUNCS = {"throughput": w_throughput, "transfer": w_transfer, "deadnode": w_deadnode, "balance": w_balance,
         "recover": w_recover, "actor": w_actor}


def parse_args(argv=None, default_node_timeout=None):
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tasks", type=int, default=None, help="C1 tasks (default 20,000, quick 2,000)")
    p.add_argument("--transfer-mb", dest="transfer_mib", type=int, default=None,
                   help="C2 array size in MiB (default 1024, quick 64)")
    p.add_argument("--node-timeout", type=float, default=default_node_timeout,
                   help="C3 heartbeat timeout, s, where the system has one to set")
    o = p.parse_args(argv)
    q = 1 if o.quick else 0
    o.tasks = o.tasks or TASKS[q]
    o.warmup = WARMUP_TASKS[q]
    o.transfer_mib = o.transfer_mib or TRANSFER_MIB[q]
    o.recover_mib = RECOVER_MIB[q]
    o.actor_calls = ACTOR_CALLS[q]
    o.actor_round_trips = ACTOR_ROUND_TRIPS[q]
    return o



def main(ad, argv=None, default_node_timeout=None):
    o = parse_args(argv, default_node_timeout)
    payload = {"system": ad.name, "workload": o.workload, "quick": o.quick,
               "options": {"tasks": o.tasks, "transfer_mib": o.transfer_mib,
                           "node_timeout": o.node_timeout, "heartbeat": ad.heartbeat}}

    def measure():
        payload["version"] = ad.version()
        return FUNCS[o.workload](ad, o)
    return run_cell(payload, measure, ad.shutdown)
