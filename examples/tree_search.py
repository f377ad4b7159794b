"""A tree search with nested tasks: count the solutions of the N-queens puzzle.

Each task places a queen in the next row and, for every safe column, submits a task for
the rest of the board, down to ``split`` rows; below that it searches serially. Tasks
wait for their children inside the workers (``future.result()`` in a task): a waiting
task lends its CPU out, so the tree never deadlocks, however deep (see README, "Nested
tasks").

    python -m actorscoop -n 4 examples/tree_search.py [n] [split]
"""
import sys

from actorscoop import futures


def safe(queens, column):
    row = len(queens)
    return all(c != column and abs(c - column) != row - r for r, c in enumerate(queens))


def count_serial(n, queens):
    if len(queens) == n:
        return 1
    return sum(count_serial(n, queens + (c,)) for c in range(n) if safe(queens, c))


def count(n, queens=(), split=3):
    """Solutions below this partial board: in parallel down to ``split`` queens."""
    if len(queens) >= split:
        return count_serial(n, queens)
    children = [futures.submit(count, n, queens + (c,), split)
                for c in range(n) if safe(queens, c)]
    return sum(child.result() for child in children)


if __name__ == "__main__":
    n, split = (int(x) for x in (sys.argv[1:3] or (8, 3)))
    print(f"{n}-queens: {count(n, split=split)} solutions")
