"""Reliability figures (issue 8): load, objects and chaos, as numbers anyone can reproduce.

    python benchmarks/reliability.py                 # the full run (~10-20 min on 2 cores)
    python benchmarks/reliability.py --quick         # small numbers (what the test suite runs)
    python benchmarks/reliability.py --only load,objects --tasks 200000
    python benchmarks/reliability.py --only soak --minutes 60 --write   # the long soak

Parts (each in a fresh process tree, results printed as markdown and, with --write,
appended to RELIABILITY.md):

- **load**: N no-op tasks (default 1,000,000) through one driver on the embedded node, in
  waves of ``--wave``; then M (default 200,000) across a 4-node loopback cluster. Every
  result is checked (task i returns i); every execution is logged by the worker (one
  line per run, unbuffered) so a task run twice, or never, is counted. Peak RSS of the
  driver and of each raylet is compared with its RSS after the first 10% of the tasks.
- **objects**: 100,000 small and 1,000 large objects put and dropped in a loop; then the
  owner's object table and the store must be empty, and /dev/shm back to its baseline.
- **chaos**: a workload of tasks, nested tasks and actor calls on a 4-node loopback
  cluster while workers, actor processes and non-head nodes are SIGKILLed at random
  moments, for N rounds; every retriable result must be right, every other outcome a
  typed error; a fresh workload must run afterwards.
- **soak** (only when named: ``--only soak --minutes 60 [--sample 30] [--kill-every 180]``):
  a mixed workload (tasks, nested tasks, actors, small and large objects across nodes,
  named actors, futures.map) in rounds on a 4-node loopback cluster for M minutes, every
  result checked; RSS, USS, fds and threads of every node process, the nodes' tables and
  /dev/shm sampled; drift figures and PASS/FAIL (see benchmarks/_soak.py).
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import time

import numpy as np
import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)

import actorscoop as asc  # noqa: E402
from actorscoop import exceptions as E  # noqa: E402
from actorscoop.testing import Cluster  # noqa: E402

from _drift import shm_files as _shm_files  # noqa: E402
from _runlog import ENV as RUN_LOG, noop, runs  # noqa: E402

MiB = 1 << 20


# ---------------------------------------------------------------------- tasks
@asc.remote
def square(i, seconds=0.0):
    time.sleep(seconds)
    return i * i


fragile = square.options(max_retries=0)


@asc.remote
def tree(i, depth):
    """Nested tasks: a task that submits two and waits for them."""
    if depth == 0:
        return i
    return sum(asc.get([tree.remote(i, depth - 1), tree.remote(i + 1, depth - 1)]))


@asc.remote(max_restarts=-1, max_task_retries=-1)
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return k * 2


def _rss(pid):
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def _count_runs(log_dir):
    """(executions logged, the task numbers that ran)."""
    by_task = runs(log_dir)
    return sum(len(pids) for pids in by_task.values()), set(by_task)


# ---------------------------------------------------------------------- load
def _waves(n, wave, pids):
    """Submit ``n`` no-ops in waves; returns (seconds, wrong results, rss samples)."""
    samples = {name: [] for name in pids}
    wrong = 0
    started = time.perf_counter()
    done = 0
    while done < n:
        k = min(wave, n - done)
        refs = [noop.remote(i) for i in range(done, done + k)]
        got = asc.get(refs, timeout=600)
        wrong += sum(1 for a, b in zip(got, range(done, done + k)) if a != b)
        del refs, got
        done += k
        for name, pid in pids.items():
            samples[name].append((done, _rss(pid)))
    return time.perf_counter() - started, wrong, samples


def _memory_rows(samples, n):
    rows = []
    for name, points in samples.items():
        warm = next((rss for done, rss in points if done >= n // 10), points[0][1])
        peak = max(rss for _, rss in points)
        last = points[-1][1]
        rows.append((name, warm, peak, last, peak / warm if warm else 0.0))
    return rows


def part_load(n_single, n_cluster, wave):
    out = []
    log_dir = tempfile.mkdtemp(prefix="asc-reliability-")
    os.environ[RUN_LOG] = log_dir
    try:
        for label, n, cluster_nodes in (("embedded node, 2 CPUs", n_single, None),
                                        ("4-node loopback cluster, 1 CPU each", n_cluster, 4)):
            for f in os.listdir(log_dir):
                os.unlink(os.path.join(log_dir, f))
            cluster = None
            if cluster_nodes:
                cluster = Cluster(nodes=[{"num_cpus": 1}] * cluster_nodes)
                asc.init(address=cluster.address)
            else:
                asc.init(num_cpus=2)
            try:
                if cluster is None:
                    raylets = [asc._driver._api.status()["pid"]]
                else:
                    raylets = [cluster.info(i)["pid"] for i in range(cluster_nodes)]
                pids = {"driver": os.getpid(), **{f"raylet {i + 1} (pid {pid})": pid for i, pid in enumerate(raylets)}}
                seconds, wrong, samples = _waves(n, wave, pids)
            finally:
                asc.shutdown()
                if cluster is not None:
                    cluster.shutdown()
            total, seen = _count_runs(log_dir)
            lost = n - len(seen & set(range(n)))
            twice = total - len(seen)
            out.append(f"### {n:,} no-op tasks, {label}, waves of {wave:,}\n")
            out.append(f"- {n / seconds:,.0f} tasks/s ({seconds:.1f} s); wrong results: {wrong}; "
                       f"never run: {lost}; run more than once: {twice} (no failure was injected)")
            out.append("\n| process | RSS after 10% | peak RSS | RSS at the end | peak / after 10% |")
            out.append("|---|---:|---:|---:|---:|")
            for name, warm, peak, last, ratio in _memory_rows(samples, n):
                out.append(f"| {name} | {warm / MiB:.1f} MiB | {peak / MiB:.1f} MiB | {last / MiB:.1f} MiB | {ratio:.2f} |")
            out.append("")
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
        os.environ.pop(RUN_LOG, None)
    return "\n".join(out)


# ---------------------------------------------------------------------- objects
def part_objects(n_small, n_large, large_mib):
    asc.init(num_cpus=1, object_store_memory=max(256, 4 * large_mib) * MiB)
    pids = [p.pid for p in psutil.Process(asc._driver._api.status()["pid"]).children(recursive=True)]
    try:
        started = time.perf_counter()
        for i in range(n_small):
            ref = asc.put(i)
            assert asc.get(ref) == i
            del ref
        small_s = time.perf_counter() - started
        big = np.ones(large_mib * MiB, dtype=np.uint8)
        started = time.perf_counter()
        for i in range(n_large):
            big[0] = i % 256
            ref = asc.put(big)
            assert asc.get(ref)[0] == i % 256
            del ref
        large_s = time.perf_counter() - started
        deadline = time.monotonic() + 30
        while True:
            s = asc._driver._api.status()
            objects, store_used = s["objects"]["objects"], (s.get("store") or {}).get("used", 0)
            if (objects == 0 and store_used == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        shm_running = _shm_files(pids)
    finally:
        asc.shutdown()
    deadline = time.monotonic() + 30
    while _shm_files(pids)[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    shm_after = _shm_files(pids)
    ok = objects == 0 and store_used == 0 and shm_after == (0, 0)
    return "\n".join([
        f"### {n_small:,} small and {n_large:,} large ({large_mib} MiB) objects put and dropped\n",
        f"- small: {n_small / small_s:,.0f} put+get+drop per s; large: {n_large / large_s:,.1f} per s",
        f"- afterwards, on the running node: {objects} objects in the owner's table, "
        f"{store_used:,} bytes used in the store",
        f"- the node's files in /dev/shm: {shm_running[1]} ({shm_running[0] / MiB:.1f} MiB resident: its "
        f"arena) while it ran, {shm_after[1]} ({shm_after[0] / MiB:.1f} MiB) after shutdown",
        f"- **{'PASS' if ok else 'FAIL'}**: tables and store empty, /dev/shm back to its baseline",
        ""])


# ---------------------------------------------------------------------- chaos
def _victims(cluster, rng):
    """A random process to kill: a worker or actor process of a random non-head node, or
    (one time in five) a whole non-head node."""
    live = [i for i in range(1, len(cluster.nodes)) if cluster.nodes[i][0].poll() is None]
    if not live:
        return None
    i = rng.choice(live)
    if rng.random() < 0.2:
        return ("node", i)
    raylet = psutil.Process(cluster.info(i)["pid"])
    # the raylet's children are its zygote and its store; workers and actors are the zygote's
    workers = [w for z in raylet.children() if "actorscoop.node.worker._zygote" in z.cmdline() for w in z.children()]
    return ("process", rng.choice(workers).pid) if workers else None


def part_chaos(rounds, seed):
    rng = random.Random(seed)
    # actors need a "box", which only the non-head nodes have: their processes can be killed
    cluster = Cluster(nodes=[{"num_cpus": 1}] + [{"num_cpus": 1, "resources": {"box": 4}}] * 3,
                      config={"node_timeout": 2.0})
    outcomes = {"right": 0, "wrong": 0, "retriable failed": 0}
    kills = {"process": 0, "node": 0}
    typed = {}
    asc.init(address=cluster.address)
    try:
        counters = [Counter.options(num_cpus=0, resources={"box": 1}).remote() for _ in range(3)]
        for r in range(rounds):
            refs = [(square.remote(i, 0.02), i * i, True) for i in range(60)]
            refs += [(tree.remote(i, 2), 4 * i + 4, True) for i in range(6)]
            refs += [(c.add.remote(i), 2 * i, True) for i in range(10) for c in counters]
            refs += [(fragile.remote(i, 0.05), i * i, False) for i in range(10)]
            time.sleep(rng.uniform(0.0, 0.3))
            victim = _victims(cluster, rng)
            if victim is not None:
                kind, what = victim
                try:
                    if kind == "node":
                        cluster.kill_node(what)
                        cluster.add_node(num_cpus=1, resources={"box": 4})  # keep four nodes
                    else:
                        os.kill(what, 9)
                    kills[kind] += 1
                except (ProcessLookupError, psutil.Error):
                    pass
            for ref, expected, retriable in refs:
                try:
                    got = asc.get(ref, timeout=120)
                    outcomes["right" if got == expected else "wrong"] += 1
                except E.ActorScoopError as exc:
                    if retriable:
                        outcomes["retriable failed"] += 1
                    name = type(exc).__name__
                    typed[name] = typed.get(name, 0) + 1
        fresh = asc.get([square.remote(i) for i in range(200)], timeout=120) == [i * i for i in range(200)]
    finally:
        asc.shutdown()
        cluster.shutdown()
    total = outcomes["right"] + outcomes["wrong"] + sum(typed.values())
    ok = outcomes["wrong"] == 0 and outcomes["retriable failed"] == 0 and fresh
    return "\n".join([
        f"### Chaos: {rounds} rounds on a 4-node loopback cluster (seed {seed})\n",
        f"- each round: 60 tasks, 6 nested task trees (7 tasks each), 30 calls to 3 actors "
        f"(max_restarts=-1, max_task_retries=-1, on the non-head nodes), 10 tasks with max_retries=0; then one random "
        f"SIGKILL (a worker or actor process, or one time in five a whole node) 0-0.3 s in",
        f"- kills: {kills['process']} worker/actor processes, {kills['node']} nodes (each replaced)",
        f"- outcomes of {total:,} results: {outcomes['right']:,} right, {outcomes['wrong']} wrong, "
        + (", ".join(f"{v} {k}" for k, v in sorted(typed.items())) or "no errors")
        + f" ({outcomes['retriable failed']} of them retriable)",
        f"- a fresh workload afterwards: {'ran, all right' if fresh else 'FAILED'}",
        f"- **{'PASS' if ok else 'FAIL'}**: every retriable result right; every other failure a "
        f"typed actorscoop error; the cluster runs fresh work afterwards",
        ""])


# ---------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="load,objects,chaos")
    p.add_argument("--quick", action="store_true", help="small numbers (seconds, not minutes)")
    p.add_argument("--tasks", type=int, default=None, help="no-op tasks on the embedded node")
    p.add_argument("--cluster-tasks", type=int, default=None)
    p.add_argument("--wave", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--minutes", type=float, default=60.0, help="soak: how long the workload runs")
    p.add_argument("--sample", type=float, default=30.0, help="soak: seconds between samples")
    p.add_argument("--kill-every", type=float, default=0.0,
                   help="soak: SIGKILL a task worker every this many seconds (default: never)")
    p.add_argument("--write", action="store_true", help="append the figures to RELIABILITY.md")
    a = p.parse_args(argv)
    q = a.quick
    parts = [s.strip() for s in a.only.split(",") if s.strip()]
    text = [f"## Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
            f"{' (quick)' if q else ''}, {os.cpu_count()} CPUs\n"]
    if "load" in parts:
        text.append(part_load(a.tasks or (5_000 if q else 1_000_000),
                              a.cluster_tasks or (2_000 if q else 200_000), min(a.wave, 1_000) if q else a.wave))
    if "objects" in parts:
        text.append(part_objects(1_000 if q else 100_000, 20 if q else 1_000, 8))
    if "chaos" in parts:
        text.append(part_chaos(a.rounds or (3 if q else 30), a.seed))
    if "soak" in parts:
        import _soak
        text.append(_soak.part_soak(a.minutes, a.sample, a.kill_every, a.seed))
    report = "\n".join(text)
    print(report)
    if a.write:
        with open(os.path.join(os.path.dirname(HERE), "RELIABILITY.md"), "a") as f:
            f.write("\n" + report + "\n")
    return 1 if "FAIL" in report else 0


if __name__ == "__main__":
    sys.exit(main())
