"""Ray store runner: ``ray.init(num_cpus=2, object_store_memory=...)``, ``ray.put``/``ray.get``.

Ray's defaults otherwise (dashboard included, spilling to its session directory).
"""
import os
import sys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402

import _store_common as C  # noqa: E402


@ray.remote
def noop():
    return None


@ray.remote(num_cpus=0.25)
def reader(x, hold_dir):
    return C.reader_body(x, hold_dir)


@ray.remote(num_cpus=0.25)
def blocker(x, hold_dir):
    return C.blocker_body(x, hold_dir)


class Adapter:
    name = "ray"

    def version(self):
        return ray.__version__

    def setup(self, object_store_memory):
        ray.init(num_cpus=2, object_store_memory=int(object_store_memory), log_to_driver=False)

    def teardown(self):
        ray.shutdown()

    def put(self, v):
        return ray.put(v)

    def get(self, ref):
        return ray.get(ref)

    def free(self, ref):
        pass

    def warm(self):
        ray.get(noop.remote())

    def reader_submit(self, ref, n, hold_dir):
        return [reader.remote(ref, hold_dir) for _ in range(n)]

    def blocker_submit(self, ref, n, hold_dir):
        return [blocker.remote(ref, hold_dir) for _ in range(n)]

    def gather(self, hs):
        return ray.get(hs)


if __name__ == "__main__":
    sys.exit(C.main(Adapter()))
