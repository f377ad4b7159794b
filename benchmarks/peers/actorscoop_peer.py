"""actorscoop runner: ``asc.init(num_cpus=2)``, ``@asc.remote``, ``asc.get``.

Nested fib calls ``asc.get`` inside a remote function.
"""
import os
import sys

import _common

_IMPORT_ERROR = None
try:  # the runtime may be incomplete: report the error as a result row, don't crash
    import actorscoop as asc

    @asc.remote
    def noop():
        return None

    @asc.remote
    def getpid():
        return os.getpid()

    @asc.remote
    def fib(n):
        if n < 2:
            return n
        return sum(asc.get([fib.remote(n - 1), fib.remote(n - 2)]))

except Exception as exc:
    _IMPORT_ERROR = exc


class ActorScoopAdapter:
    name = "actorscoop"

    def version(self):
        if _IMPORT_ERROR is not None:
            raise _IMPORT_ERROR
        return getattr(asc, "__version__", "dev")

    def setup(self):
        asc.init(num_cpus=2)

    def teardown(self):
        asc.shutdown()

    def one(self):
        return asc.get(noop.remote())

    @property
    def whoami(self):
        return getpid

    def submit(self, n, fn=None):
        fn = noop if fn is None else fn
        return [fn.remote() for _ in range(n)]

    def gather(self, handles):
        return asc.get(handles)

    def fib(self, n):
        return asc.get(fib.remote(n))


if __name__ == "__main__":
    sys.exit(_common.main(ActorScoopAdapter()))
