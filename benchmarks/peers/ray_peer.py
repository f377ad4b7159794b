"""Ray runner: ``ray.init(num_cpus=2)`` with Ray's defaults (dashboard included).

Nested fib uses ``ray.get`` inside tasks, Ray's documented way to nest.
The driver cleans up any Ray process left after ``ray.shutdown()`` by pid.
"""
import os
import sys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls home

import ray  # noqa: E402

import _common  # noqa: E402


@ray.remote
def noop():
    return None


@ray.remote
def getpid():
    return os.getpid()


@ray.remote
def fib(n):
    if n < 2:
        return n
    return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))


class RayAdapter:
    name = "ray"

    def version(self):
        return ray.__version__

    def setup(self):
        ray.init(num_cpus=2, log_to_driver=False)

    def teardown(self):
        ray.shutdown()

    def one(self):
        return ray.get(noop.remote())

    whoami = getpid

    def submit(self, n, fn=noop):
        return [fn.remote() for _ in range(n)]

    def gather(self, handles):
        return ray.get(handles)

    def fib(self, n):
        return ray.get(fib.remote(n))


if __name__ == "__main__":
    sys.exit(_common.main(RayAdapter()))
