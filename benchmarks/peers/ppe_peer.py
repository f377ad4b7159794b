"""concurrent.futures.ProcessPoolExecutor(2), default start method.

It cannot nest: a task waiting on a child task holds one of only two
workers, so fib deadlocks; the driver marks those cells "n/a (cannot nest)".
"""
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import _common


def noop():
    return None


def getpid():
    return os.getpid()


class PPEAdapter:
    name = "ProcessPoolExecutor(2)"
    fib = None  # cannot nest

    def version(self):
        return "stdlib " + sys.version.split()[0]

    def setup(self):
        self.ex = ProcessPoolExecutor(max_workers=2)

    def teardown(self):
        self.ex.shutdown(wait=True)

    def one(self):
        return self.ex.submit(noop).result()

    whoami = staticmethod(getpid)

    def submit(self, n, fn=noop):
        return [self.ex.submit(fn) for _ in range(n)]

    def gather(self, handles):
        return [f.result() for f in handles]


if __name__ == "__main__":
    sys.exit(_common.main(PPEAdapter()))
