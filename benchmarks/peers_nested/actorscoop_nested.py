"""actorscoop side of nested_bench.py: ``python actorscoop_nested.py SHAPE STYLE N [CPUS]``.

SHAPE tree (N = depth) or fib (N = n); STYLE get (asc.get in a remote function), submit
(two futures.submit(...).result()), map (sum(futures.map(f, [d - 1] * 2)), SCOOP's
recurse.py shape) or mix (each level another of the three). The node is started and
warm before the clock starts: the time runs from the root's submission to its result."""
import sys

import actorscoop as asc
from actorscoop import futures

import _futures_trees
import _trees


@asc.remote
def tree_get(d):
    return 1 if d == 0 else sum(asc.get([tree_get.remote(d - 1), tree_get.remote(d - 1)]))


def tree_mix(d):
    if d == 0:
        return 1
    k = d % 3
    if k == 0:
        return sum(futures.map(tree_mix, [d - 1] * 2))
    if k == 1:
        return futures.submit(tree_mix, d - 1).result() + futures.submit(tree_mix, d - 1).result()
    return sum(asc.get([mix_remote.remote(d - 1), mix_remote.remote(d - 1)]))


mix_remote = asc.remote(tree_mix)


@asc.remote
def fib_get(n):
    return n if n < 2 else sum(asc.get([fib_get.remote(n - 1), fib_get.remote(n - 2)]))


def run(shape, style, n):
    if style == "get":
        return asc.get((fib_get if shape == "fib" else tree_get).remote(n))
    if style == "mix":
        return futures.submit(tree_mix, n).result()
    return _futures_trees.run(shape, style, n)


def main():
    shape, style, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cpus = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    asc.init(num_cpus=cpus)
    expect = 2 ** n if shape == "tree" else _trees.FIB[n]
    seconds = _trees.timed(lambda: run(shape, style, n), expect, lambda: run(shape, style, 4))
    workers = len(asc._driver._api.status()["workers"])
    asc.shutdown()
    _trees.report(seconds=seconds, workers=workers)


if __name__ == "__main__":
    main()
