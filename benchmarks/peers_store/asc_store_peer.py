"""actorscoop store runner: ``asc.init(num_cpus=2, object_store_memory=...)``, ``asc.put``/``asc.get``."""
import os
import sys

import _store_common as C

_IMPORT_ERROR = None
try:
    import actorscoop as asc

    @asc.remote
    def noop():
        return None

    @asc.remote(num_cpus=0.25)
    def reader(x, hold_dir):
        return C.reader_body(x, hold_dir)

    @asc.remote(num_cpus=0.25)
    def blocker(x, hold_dir):
        return C.blocker_body(x, hold_dir)
except Exception as exc:  # report as a result row
    _IMPORT_ERROR = exc


class Adapter:
    name = "actorscoop"

    @property
    def plasma(self):
        import actorscoop.plasma
        return actorscoop.plasma

    def version(self):
        if _IMPORT_ERROR is not None:
            raise _IMPORT_ERROR
        return getattr(asc, "__version__", "dev")

    def setup(self, object_store_memory):
        asc.init(num_cpus=2, object_store_memory=int(object_store_memory))

    def teardown(self):
        asc.shutdown()

    def put(self, v):
        return asc.put(v)

    def get(self, ref):
        return asc.get(ref)

    def free(self, ref):
        pass  # the caller drops its ref; refcounting frees the object

    def warm(self):
        asc.get(noop.remote())

    def reader_submit(self, ref, n, hold_dir):
        return [reader.remote(ref, hold_dir) for _ in range(n)]

    def blocker_submit(self, ref, n, hold_dir):
        return [blocker.remote(ref, hold_dir) for _ in range(n)]

    def gather(self, hs):
        return asc.get(hs)


if __name__ == "__main__":
    sys.exit(C.main(Adapter()))
