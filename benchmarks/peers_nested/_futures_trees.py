"""The trees of nested_bench.py through a futures module (SCOOP's or actorscoop's, named by
NESTED_FUTURES in the environment, which every worker inherits)."""
import importlib
import os

futures = importlib.import_module(os.environ.get("NESTED_FUTURES", "actorscoop.futures"))


def tree_submit(d):
    if d == 0:
        return 1
    a, b = futures.submit(tree_submit, d - 1), futures.submit(tree_submit, d - 1)
    return a.result() + b.result()


def tree_map(d):  # SCOOP's examples/recurse.py shape
    return 1 if d == 0 else sum(futures.map(tree_map, [d - 1] * 2))


def fib_submit(n):
    if n < 2:
        return n
    a, b = futures.submit(fib_submit, n - 1), futures.submit(fib_submit, n - 2)
    return a.result() + b.result()


def run(shape, style, n):
    """The root's result, submitted as a task of its own."""
    if shape == "fib":
        return futures.submit(fib_submit, n).result()
    return futures.submit(tree_submit if style == "submit" else tree_map, n).result()
