"""SCOOP side of futures_bench.py: ``python -m scoop -n 2 scoop_peer.py WORKLOAD N``.

Prints one JSON line: {"workload", "n", "seconds"} measured inside the script (SCOOP's
launch is outside it; the caller reports the wall time with launch separately).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scoop import futures  # noqa: E402


def noop(x):
    return None


def main():
    workload, n = sys.argv[1], int(sys.argv[2])
    if workload == "map":
        list(futures.map(noop, range(10)))  # warm up the workers
        t = time.perf_counter()
        out = list(futures.map(noop, range(n)))
        dt = time.perf_counter() - t
        assert len(out) == n
    elif workload == "onemax":
        import onemax
        t = time.perf_counter()
        best = onemax.run(futures.map)
        dt = time.perf_counter() - t
        assert best > 50
    else:
        raise SystemExit(f"unknown workload {workload}")
    print(json.dumps({"workload": workload, "n": n, "seconds": dt}), flush=True)


if __name__ == "__main__":
    main()
