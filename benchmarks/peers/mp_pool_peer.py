"""multiprocessing.Pool(2), default start method, ``apply_async`` per task.

It cannot nest (daemonic workers may not submit to the pool); fib is n/a.
"""
import multiprocessing
import os
import sys

import _common


def noop():
    return None


def getpid():
    return os.getpid()


class PoolAdapter:
    name = "multiprocessing.Pool(2)"
    fib = None  # cannot nest

    def version(self):
        return "stdlib " + sys.version.split()[0]

    def setup(self):
        self.pool = multiprocessing.Pool(2)

    def teardown(self):
        self.pool.close()
        self.pool.join()

    def one(self):
        return self.pool.apply_async(noop).get()

    whoami = staticmethod(getpid)

    def submit(self, n, fn=noop):
        return [self.pool.apply_async(fn) for _ in range(n)]

    def gather(self, handles):
        return [r.get() for r in handles]


if __name__ == "__main__":
    sys.exit(_common.main(PoolAdapter()))
