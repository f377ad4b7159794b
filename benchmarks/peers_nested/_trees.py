"""The nested shapes every runner times, written once per system's way of nesting.

A *tree* of depth d is a balanced binary tree of 2**(d+1) - 1 task calls: each call
with d > 0 submits two calls of depth d - 1 and waits for both. fib(n) submits fib(n-1)
and fib(n-2). Every call is one task (an item of a futures.map counts once)."""
import json
import sys
import time

RESULT = "@@NESTED "


def tasks_of_tree(depth):
    return 2 ** (depth + 1) - 1


def tasks_of_fib(n):
    a, b = 1, 1  # calls(n) = calls(n-1) + calls(n-2) + 1, calls(0) = calls(1) = 1
    for _ in range(n - 1):
        a, b = b, a + b + 1
    return b if n >= 1 else 1


FIB = {15: 610, 16: 987}


def timed(run, expect, warmup=None):
    """Seconds of one timed run (after an untimed ``warmup()``), checking its result."""
    if warmup is not None:
        warmup()
    t0 = time.perf_counter()
    got = run()
    dt = time.perf_counter() - t0
    if got != expect:
        raise SystemExit(f"wrong result: {got!r} != {expect!r}")
    return dt


def report(**fields):
    sys.stdout.write(RESULT + json.dumps(fields) + "\n")
    sys.stdout.flush()
