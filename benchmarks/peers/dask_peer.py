"""Dask distributed: ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``.

Tasks are submitted with ``pure=False`` so that identical calls are not
deduplicated (that would memoize fib). Nested fib uses ``worker_client()``,
which secedes the worker thread while it waits on its children.
"""
import os
import sys

import _common


def noop():
    return None


def getpid():
    return os.getpid()


def fib(n):
    if n < 2:
        return n
    from distributed import worker_client

    with worker_client() as client:
        a = client.submit(fib, n - 1, pure=False)
        b = client.submit(fib, n - 2, pure=False)
        return sum(client.gather([a, b]))


class DaskAdapter:
    name = "dask"

    def version(self):
        import dask
        import distributed

        return f"dask {dask.__version__} / distributed {distributed.__version__}"

    def setup(self):
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    dashboard_address=":0")
        self.client = Client(self.cluster)

    def teardown(self):
        self.client.close()
        self.cluster.close()

    def one(self):
        return self.client.submit(noop, pure=False).result()

    whoami = staticmethod(getpid)

    def submit(self, n, fn=noop):
        return [self.client.submit(fn, pure=False) for _ in range(n)]

    def gather(self, handles):
        return self.client.gather(handles)

    def fib(self, n):
        return self.client.submit(fib, n, pure=False).result()


if __name__ == "__main__":
    sys.exit(_common.main(DaskAdapter()))
