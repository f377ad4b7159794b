"""loky: ``get_reusable_executor(max_workers=2)``; cannot nest (fib is n/a)."""
import os
import sys

import loky

import _common


def noop():
    return None


def getpid():
    return os.getpid()


class LokyAdapter:
    name = "loky"
    fib = None  # cannot nest

    def version(self):
        return loky.__version__

    def setup(self):
        self.ex = loky.get_reusable_executor(max_workers=2, timeout=600)

    def teardown(self):
        self.ex.shutdown(wait=True, kill_workers=True)

    def one(self):
        return self.ex.submit(noop).result()

    whoami = staticmethod(getpid)

    def submit(self, n, fn=noop):
        return [self.ex.submit(fn) for _ in range(n)]

    def gather(self, handles):
        return [f.result() for f in handles]


if __name__ == "__main__":
    sys.exit(_common.main(LokyAdapter()))
