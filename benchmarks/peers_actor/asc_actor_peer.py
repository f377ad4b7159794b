"""actorscoop actor runner: ``asc.init(num_cpus=2)``, ``@asc.remote`` class, default options."""
import sys

import _actor_common as C

_IMPORT_ERROR = None
try:
    import actorscoop as asc

    @asc.remote
    class Counter:
        def __init__(self, start=0):
            self.n = start

        def incr(self, k=1):
            self.n += k
            return self.n

    @asc.remote
    def caller(h, n):
        return asc.get([h.incr.remote() for _ in range(n)])[-1]
except Exception as exc:
    _IMPORT_ERROR = exc


class Adapter:
    name = "actorscoop"

    def version(self):
        if _IMPORT_ERROR is not None:
            raise _IMPORT_ERROR
        return getattr(asc, "__version__", "dev")

    def setup(self):
        asc.init(num_cpus=2)

    def teardown(self):
        asc.shutdown()

    def counter(self):
        return Counter.remote()

    def incr(self, h):
        return h.incr.remote()

    def get(self, refs):
        return asc.get(refs)

    def callers(self, hs, n):
        return [caller.remote(h, n) for h in hs]


if __name__ == "__main__":
    sys.exit(C.main(Adapter()))
