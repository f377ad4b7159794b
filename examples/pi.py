"""Estimate pi by Monte Carlo over many tasks on an embedded local node.

    python examples/pi.py [tasks] [samples-per-task]
"""
import sys
import time

import numpy as np

import actorscoop as asc


@asc.remote
def hits(seed, n):
    rng = np.random.default_rng(seed)
    x, y = rng.random(n), rng.random(n)
    return int(np.count_nonzero(x * x + y * y <= 1.0))


def main():
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    t = time.perf_counter()
    inside = sum(asc.get([hits.remote(seed, n) for seed in range(tasks)]))
    pi = 4.0 * inside / (tasks * n)
    print(f"pi ~= {pi:.6f} (error {abs(pi - np.pi):.1e}) from {tasks * n:,} samples "
          f"in {tasks} tasks on {asc.cluster_resources()['CPU']:g} CPUs, "
          f"{time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
