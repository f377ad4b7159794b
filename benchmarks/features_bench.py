#!/usr/bin/env python
"""Placement groups and runtime environments (issue 20), side by side with Ray.

    python benchmarks/features_bench.py [--reps 5] [--only asc,ray] [--json FILE]

- ``pg``: a loopback cluster of 4 nodes of 1 CPU each; the time to create a 4-bundle
  SPREAD group ({"CPU": 1} each) and have ``pg.ready()`` resolve (the median of ``--reps``
  groups, each removed, and its CPUs back, before the next).
- ``wd``: a cluster of a head and one more node (the only one with the resource "far"),
  and a 10 MB working_dir (random bytes: the zip cannot shrink it). Job 1 (``init`` with
  ``runtime_env={"working_dir": d}``) runs one task on the other node: the time from
  ``init()`` to its result (packaging, upload, the node fetching and unpacking it) and from
  the submit to the result. Job 2, a new driver with the same directory: the same times,
  now a cache hit on the node. Both jobs run in one process, one after the other.

Each system runs in a child process of its own (actorscoop: this interpreter, i.e. the
tree being measured; Ray: ``$BENCH_VENV/bin/python``, default /work/benchvenv); this
script is a child subreaper (_watchdog.py): whatever a child leaves running is killed by
pid afterwards. Timings are wall-clock on a shared machine: compare within one run.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BENCH_PY = os.path.join(os.environ.get("BENCH_VENV", "/work/benchvenv"), "bin", "python")
WD_BYTES = 10 * 2**20


def _make_dir(root):
    d = os.path.join(root, "wd")
    os.makedirs(d)
    with open(os.path.join(d, "blob.bin"), "wb") as f:
        f.write(os.urandom(WD_BYTES))
    with open(os.path.join(d, "bench_wd_mod.py"), "w") as f:
        f.write("VALUE = 7\n")
    return d


# ---------------------------------------------------------------- actorscoop
def asc_pg(reps):
    import actorscoop as asc
    from actorscoop.testing import Cluster
    from actorscoop.util import placement_group, remove_placement_group
    times = []
    with Cluster(nodes=[{"num_cpus": 1}] * 4) as c:
        asc.init(address=c.address)
        try:
            _wait(lambda: asc.cluster_resources().get("CPU") == 4.0)
            for _ in range(reps):
                t0 = time.perf_counter()
                pg = placement_group([{"CPU": 1}] * 4, strategy="SPREAD")
                asc.get(pg.ready(), timeout=60)
                times.append(time.perf_counter() - t0)
                remove_placement_group(pg)
                _wait(lambda: asc.available_resources().get("CPU") == 4.0)
        finally:
            asc.shutdown()
    return times


def asc_wd(root):
    import actorscoop as asc
    from actorscoop.testing import Cluster
    d = _make_dir(root)
    out = []
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"far": 1}}]) as c:
        for _job in range(2):
            t0 = time.perf_counter()
            asc.init(address=c.address, runtime_env={"working_dir": d})
            try:
                @asc.remote(resources={"far": 1})
                def probe():
                    import bench_wd_mod
                    return bench_wd_mod.VALUE
                t1 = time.perf_counter()
                assert asc.get(probe.remote(), timeout=120) == 7
                t2 = time.perf_counter()
            finally:
                asc.shutdown()
            out.append({"init_to_result": t2 - t0, "submit_to_result": t2 - t1})
    return out


# ---------------------------------------------------------------- Ray
def ray_pg(reps):
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.placement_group import placement_group, remove_placement_group
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(3):
        c.add_node(num_cpus=1)
    times = []
    try:
        ray.init(address=c.address, log_to_driver=False)
        c.wait_for_nodes()
        _wait(lambda: ray.cluster_resources().get("CPU") == 4.0)
        for _ in range(reps):
            t0 = time.perf_counter()
            pg = placement_group([{"CPU": 1}] * 4, strategy="SPREAD")
            ray.get(pg.ready(), timeout=60)
            times.append(time.perf_counter() - t0)
            remove_placement_group(pg)
            _wait(lambda: ray.available_resources().get("CPU") == 4.0)
    finally:
        ray.shutdown()
        c.shutdown()
    return times


def ray_wd(root):
    import ray
    from ray.cluster_utils import Cluster
    d = _make_dir(root)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1, resources={"far": 1})
    out = []
    try:
        for _job in range(2):
            t0 = time.perf_counter()
            ray.init(address=c.address, runtime_env={"working_dir": d}, log_to_driver=False)
            try:
                @ray.remote(resources={"far": 1})
                def probe():
                    import bench_wd_mod
                    return bench_wd_mod.VALUE
                t1 = time.perf_counter()
                assert ray.get(probe.remote(), timeout=120) == 7
                t2 = time.perf_counter()
            finally:
                ray.shutdown()
            out.append({"init_to_result": t2 - t0, "submit_to_result": t2 - t1})
    finally:
        c.shutdown()
    return out


def _wait(pred, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster did not settle")
        time.sleep(0.05)


# ---------------------------------------------------------------- the parent
def child(system, workload, reps):
    root = tempfile.mkdtemp(prefix="features-bench-")
    try:
        fn = {("asc", "pg"): lambda: asc_pg(reps), ("asc", "wd"): lambda: asc_wd(root),
              ("ray", "pg"): lambda: ray_pg(reps), ("ray", "wd"): lambda: ray_wd(root)}[(system, workload)]
        print("RESULT " + json.dumps(fn()), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_child(py, system, workload, reps, env):
    sys.path.insert(0, HERE)
    import _watchdog
    try:
        out = subprocess.run([py, os.path.abspath(__file__), "--child", system, "--workload", workload,
                              "--reps", str(reps)], capture_output=True, text=True, timeout=900, env=env)
    finally:
        _watchdog.kill_tree()
        _watchdog.reap_zombies()
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (out.stderr or out.stdout)[-800:]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", default="asc,ray")
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None)
    p.add_argument("--workload", default=None)
    a = p.parse_args()
    if a.child:
        child(a.child, a.workload, a.reps)
        return 0
    sys.path.insert(0, HERE)
    import _watchdog
    _watchdog.become_subreaper()
    systems = [s for s in a.only.split(",") if s]
    pys = {"asc": sys.executable, "ray": BENCH_PY}
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=REPO)
    results = {}
    for workload in ("pg", "wd"):
        for s in systems:
            results[(s, workload)] = run_child(pys[s], s, workload, a.reps, env if s == "asc" else
                                               {k: v for k, v in env.items() if k != "PYTHONPATH"})
    print(f"features_bench {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, reps {a.reps}, "
          f"actorscoop from {sys.executable}")
    print("| measure | actorscoop | Ray | actorscoop / Ray |\n|---|---|---|---|")

    def cell(v):
        return f"{v * 1000:.1f} ms" if isinstance(v, float) else str(v)[:60]

    def row(name, asc_v, ray_v):
        ratio = f"{asc_v / ray_v:.2f}" if isinstance(asc_v, float) and isinstance(ray_v, float) and ray_v else "-"
        print(f"| {name} | {cell(asc_v)} | {cell(ray_v)} | {ratio} |")

    def med(r):
        return statistics.median(r) if isinstance(r, list) else r.get("error", "?")

    row("4-bundle SPREAD group on 4 nodes, create + ready (median)",
        med(results.get(("asc", "pg"), {"error": "-"})), med(results.get(("ray", "pg"), {"error": "-"})))
    for job, label in ((0, "job 1, fresh node"), (1, "job 2, same dir (cache hit)")):
        for key in ("init_to_result", "submit_to_result"):
            vals = []
            for s in ("asc", "ray"):
                r = results.get((s, "wd"), {"error": "-"})
                vals.append(r[job][key] if isinstance(r, list) else r.get("error", "?"))
            row(f"10 MB working_dir, {label}: {key.replace('_', ' ')}", *vals)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({f"{s}/{w}": v for (s, w), v in results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
