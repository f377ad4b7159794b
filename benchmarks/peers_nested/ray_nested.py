"""Ray side of nested_bench.py: ``python ray_nested.py SHAPE get N`` (ray.get inside
tasks, Ray's documented way to nest; ray.init(num_cpus=2) with its defaults)."""
import os
import sys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402

import _trees  # noqa: E402


@ray.remote
def tree_get(d):
    return 1 if d == 0 else sum(ray.get([tree_get.remote(d - 1), tree_get.remote(d - 1)]))


@ray.remote
def fib_get(n):
    return n if n < 2 else sum(ray.get([fib_get.remote(n - 1), fib_get.remote(n - 2)]))


def main():
    shape, _style, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ray.init(num_cpus=2, log_to_driver=False)
    fn = tree_get if shape == "tree" else fib_get
    expect = 2 ** n if shape == "tree" else _trees.FIB[n]
    print(f"@@START {__import__('time').time()}", flush=True)  # a killed run's lower bound
    seconds = _trees.timed(lambda: ray.get(fn.remote(n)), expect, lambda: ray.get(fn.remote(4)))
    ray.shutdown()
    _trees.report(seconds=seconds)


if __name__ == "__main__":
    main()
