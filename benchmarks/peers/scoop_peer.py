"""SCOOP runner, started by the driver as ``python -m scoop -n 2 scoop_peer.py``.

SCOOP starts its broker and workers before this script's main runs, so the
"init" value is process start (launcher) -> first result.
Nested fib submits with ``futures.submit`` inside tasks (greenlets).
No compatibility patch was needed for SCOOP 0.7.2.0 on Python 3.11.
"""
import os
import sys

from scoop import futures

import _common


def noop():
    return None


def getpid():
    return os.getpid()


def fib(n):
    if n < 2:
        return n
    a = futures.submit(fib, n - 1)
    b = futures.submit(fib, n - 2)
    return a.result() + b.result()


class ScoopAdapter:
    name = "scoop"
    init_from_process_start = True

    def version(self):
        from importlib.metadata import version

        return version("scoop")

    def setup(self):
        pass

    def teardown(self):
        pass

    def one(self):
        return futures.submit(noop).result()

    whoami = staticmethod(getpid)

    def submit(self, n, fn=noop):
        return [futures.submit(fn) for _ in range(n)]

    def gather(self, handles):
        return [f.result() for f in handles]

    def fib(self, n):
        return futures.submit(fib, n).result()


if __name__ == "__main__":
    sys.exit(_common.main(ScoopAdapter()))
