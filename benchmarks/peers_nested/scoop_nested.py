"""SCOOP side of nested_bench.py: ``python -m scoop -n 2 scoop_nested.py SHAPE STYLE N``.
STYLE submit or map (SCOOP has no get of task results other than a future's result())."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["NESTED_FUTURES"] = "scoop.futures"

from _futures_trees import run  # noqa: E402
import _trees  # noqa: E402


def main():
    shape, style, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    expect = 2 ** n if shape == "tree" else _trees.FIB[n]
    seconds = _trees.timed(lambda: run(shape, style, n), expect, lambda: run(shape, style, 4))
    _trees.report(seconds=seconds)


if __name__ == "__main__":
    main()
