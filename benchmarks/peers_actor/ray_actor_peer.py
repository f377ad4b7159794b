"""Ray actor runner: ``ray.init(num_cpus=2)`` with Ray's defaults, ``@ray.remote`` class."""
import os
import sys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402

import _actor_common as C  # noqa: E402


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def incr(self, k=1):
        self.n += k
        return self.n


@ray.remote
def caller(h, n):
    return ray.get([h.incr.remote() for _ in range(n)])[-1]


class Adapter:
    name = "ray"

    def version(self):
        return ray.__version__

    def setup(self):
        ray.init(num_cpus=2, log_to_driver=False)

    def teardown(self):
        ray.shutdown()

    def counter(self):
        return Counter.remote()

    def incr(self, h):
        return h.incr.remote()

    def get(self, refs):
        return ray.get(refs)

    def callers(self, hs, n):
        return [caller.remote(h, n) for h in hs]


if __name__ == "__main__":
    sys.exit(C.main(Adapter()))
