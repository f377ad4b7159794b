"""Benchmarks of actorscoop.futures against the tools its users would otherwise pick.

    python benchmarks/futures_bench.py [--quick] [--scoop-python PATH] [--json FILE]

1. ``futures.map`` over 5,000 and 50,000 no-op calls, against SCOOP's ``futures.map``
   (``python -m scoop -n 2``, run with the bench venv's python) and against
   ``ProcessPoolExecutor(2).map`` with the same chunksize (the mean size of the guided
   chunks futures.map chose by default, and 1).
2. DEAP OneMax (population 300, 40 generations) with ``futures.map`` vs SCOOP's.
3. scikit-learn GridSearchCV (SVC on digits, 20 candidates x 3 folds = 60 fits) on the
   actorscoop joblib backend vs joblib's default backend (loky), warm.

Every system gets 2 CPUs. Times are the best of ``--repeat`` runs, in seconds, with the
runtime already started (node start and SCOOP's launch are reported apart). The machine
may be shared: compare ratios measured in one run, not numbers across runs.
"""
import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "futures_peers")
sys.path.insert(0, PEERS)

import _venv  # noqa: E402  (this directory is sys.path[0])
DEFAULT_SCOOP_PYTHON = _venv.PYTHON


def noop(x):
    return None


def best_of(repeat, fn):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def scoop_run(python, workload, n, timeout):
    """(seconds inside the script, wall seconds with launch) or (None, reason)."""
    if not os.path.exists(python):
        return None, f"no python at {python}"
    cmd = [python, "-m", "scoop", "-n", "2", os.path.join(PEERS, "scoop_peer.py"), workload, str(n)]
    t = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=PEERS)
    except subprocess.TimeoutExpired:
        return None, f"> {timeout} s (killed)"
    wall = time.perf_counter() - t
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)["seconds"], wall
    return None, f"failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}"


def bench_map(asc_futures, args, rows):
    from actorscoop._client import _context
    from actorscoop._futures._map import plan
    with concurrent.futures.ProcessPoolExecutor(2) as ppe:
        list(ppe.map(noop, range(100)))
        for n in args.sizes:
            # futures.map's default: guided chunks; PPE gets their mean size
            _, sizes, _ = plan([range(n)], None, _context.current())
            nchunks = len(list(sizes))
            chunk = -(-n // nchunks)
            asc = best_of(args.repeat, lambda: list(asc_futures.map(noop, range(n))))
            ppe_same = best_of(args.repeat, lambda: list(ppe.map(noop, range(n), chunksize=chunk)))
            rows.append({"workload": f"map {n} no-ops", "system": "actorscoop futures.map",
                         "chunksize": f"default ({nchunks} guided chunks, mean {chunk})",
                         "seconds": asc})
            rows.append({"workload": f"map {n} no-ops", "system": "ProcessPoolExecutor(2).map",
                         "chunksize": chunk, "seconds": ppe_same})
            if not args.quick or n <= 5000:
                asc1 = best_of(1, lambda: list(asc_futures.map(noop, range(n), chunksize=1)))
                ppe1 = best_of(1, lambda: list(ppe.map(noop, range(n), chunksize=1)))
                rows.append({"workload": f"map {n} no-ops", "system": "actorscoop futures.map",
                             "chunksize": 1, "seconds": asc1})
                rows.append({"workload": f"map {n} no-ops", "system": "ProcessPoolExecutor(2).map",
                             "chunksize": 1, "seconds": ppe1})
            inside, wall = scoop_run(args.scoop_python, "map", n, args.scoop_timeout)
            rows.append({"workload": f"map {n} no-ops", "system": "SCOOP futures.map (-n 2)",
                         "chunksize": 1, "seconds": inside,
                         "note": (f"{wall:.2f} s with launch" if inside is not None else wall)})


def bench_onemax(asc_futures, args, rows):
    try:
        import onemax
    except ImportError as exc:
        rows.append({"workload": "DEAP OneMax", "system": "actorscoop futures.map",
                     "seconds": None, "note": f"skipped: {exc}"})
        return
    asc = best_of(args.repeat, lambda: onemax.run(asc_futures.map))
    serial = best_of(1, lambda: onemax.run(map))
    rows.append({"workload": "DEAP OneMax 300x40", "system": "actorscoop futures.map", "seconds": asc})
    rows.append({"workload": "DEAP OneMax 300x40", "system": "builtin map (serial)", "seconds": serial})
    inside, wall = scoop_run(args.scoop_python, "onemax", 0, args.scoop_timeout)
    rows.append({"workload": "DEAP OneMax 300x40", "system": "SCOOP futures.map (-n 2)",
                 "seconds": inside,
                 "note": (f"{wall:.2f} s with launch" if inside is not None else wall)})


def bench_grid_search(args, rows):
    try:
        import joblib
        from sklearn.datasets import load_digits
        from sklearn.model_selection import GridSearchCV
        from sklearn.svm import SVC
    except ImportError as exc:
        rows.append({"workload": "GridSearchCV", "system": "actorscoop joblib backend",
                     "seconds": None, "note": f"skipped: {exc}"})
        return
    import actorscoop.joblib
    actorscoop.joblib.register()
    X, y = load_digits(return_X_y=True)
    grid = {"C": [0.1, 1, 10, 100, 1000], "gamma": [1e-4, 1e-3, 1e-2, 0.1]}

    def fit(backend):
        with joblib.parallel_config(backend=backend):
            return GridSearchCV(SVC(), grid, cv=3, n_jobs=2).fit(X, y)

    fit("loky")  # warm: loky keeps its workers between calls
    fit("actorscoop")  # warm: the workers import scikit-learn once
    loky = best_of(args.repeat, lambda: fit("loky"))
    asc = best_of(args.repeat, lambda: fit("actorscoop"))
    rows.append({"workload": "GridSearchCV SVC digits, 60 fits", "system": "actorscoop joblib backend",
                 "seconds": asc})
    rows.append({"workload": "GridSearchCV SVC digits, 60 fits", "system": "loky (warm)", "seconds": loky})


def table(rows):
    lines = ["| workload | system | chunksize | seconds | note |", "|---|---|---|---|---|"]
    for r in rows:
        s = r.get("seconds")
        lines.append(f"| {r['workload']} | {r['system']} | {r.get('chunksize', '')} | "
                     f"{'' if s is None else f'{s:.3f}'} | {r.get('note', '')} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="5,000 only, one repeat")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scoop-python", default=DEFAULT_SCOOP_PYTHON)
    p.add_argument("--scoop-timeout", type=float, default=180.0)
    p.add_argument("--only", default="map,onemax,gridsearch")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    args.sizes = [5000] if args.quick else [5000, 50000]
    if args.quick:
        args.repeat = 1
    import actorscoop as asc
    from actorscoop import futures
    t = time.perf_counter()
    asc.init(num_cpus=2)
    list(futures.map(noop, range(10)))
    start = time.perf_counter() - t
    rows = [{"workload": "start", "system": "actorscoop embedded node, 2 CPUs", "seconds": start}]
    only = set(args.only.split(","))
    if "map" in only:
        bench_map(futures, args, rows)
    if "onemax" in only:
        bench_onemax(futures, args, rows)
    if "gridsearch" in only:
        bench_grid_search(args, rows)
    asc.shutdown()
    load = os.getloadavg()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "load": load, "time": time.time()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
