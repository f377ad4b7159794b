"""``multiprocessing.Pool`` on actorscoop: code written for the stdlib pool runs its work
as actorscoop tasks (on this node or a cluster) with one changed import.

    from actorscoop.multiprocessing import Pool
    with Pool() as pool:
        print(pool.map(abs, range(-5, 5)))

Semantics follow the stdlib: ``map``/``starmap`` return lists in input order,
``imap`` yields in order, ``imap_unordered`` as results finish, ``apply_async`` returns
an ``AsyncResult`` (``get(timeout)``, ``wait``, ``ready``, ``successful``), callbacks run
once with the result, ``error_callback`` with the exception. ``processes`` is accepted
for compatibility; the node's CPUs bound parallelism. ``initializer`` runs once in each
task's process before the function, if it has not run there yet.
"""
import threading

from .futures import Executor

__all__ = ["Pool", "AsyncResult"]


class AsyncResult:
    """The stdlib's ApplyResult/MapResult over a concurrent.futures.Future."""

    def __init__(self, future, callback=None, error_callback=None, unpack=None):
        self._future = future
        self._unpack = unpack
        if callback is not None or error_callback is not None:
            def done(f):
                exc = f.exception()
                if exc is None:
                    if callback is not None:
                        callback(self._value(f))
                elif error_callback is not None:
                    error_callback(exc)
            future.add_done_callback(done)

    def _value(self, f):
        value = f.result()
        return self._unpack(value) if self._unpack else value

    def get(self, timeout=None):
        """The result; re-raises the task's exception; ``multiprocessing.TimeoutError``
        after ``timeout`` seconds."""
        import concurrent.futures
        import multiprocessing
        try:
            self._future.result(timeout)  # waits; raises the task's error
            return self._value(self._future)
        except concurrent.futures.TimeoutError:
            raise multiprocessing.TimeoutError(f"no result within {timeout} s") from None

    def wait(self, timeout=None):
        import concurrent.futures
        concurrent.futures.wait([self._future], timeout=timeout)

    def ready(self):
        return self._future.done()

    def successful(self):
        if not self._future.done():
            raise ValueError("the result is not ready")
        return self._future.exception() is None


def _star(fn):
    return lambda args: fn(*args)


def _with_initializer(fn, initializer, initargs):
    if initializer is None:
        return fn

    def run(*args, **kwargs):
        import builtins
        done = getattr(builtins, "__actorscoop_pool_init__", None)
        if done is None:
            done = builtins.__actorscoop_pool_init__ = set()
        key = id(initializer)
        if key not in done:
            initializer(*initargs)
            done.add(key)
        return fn(*args, **kwargs)
    return run


class Pool:
    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        self._executor = Executor(max_workers=processes)
        self._initializer, self._initargs = initializer, tuple(initargs)
        self._state = "RUN"
        self._lock = threading.Lock()
        self._pending = []

    def _fn(self, fn):
        if self._state != "RUN":
            raise ValueError("Pool not running")
        return _with_initializer(fn, self._initializer, self._initargs)

    def _track(self, fut):
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(fut)
        return fut

    # ------------------------------------------------------------------ blocking
    def apply(self, func, args=(), kwds=None):
        return self.apply_async(func, args, kwds).get()

    def map(self, func, iterable, chunksize=None):
        return list(self.imap(func, iterable, chunksize or 1))

    def starmap(self, func, iterable, chunksize=None):
        return list(self.imap(_star(func), iterable, chunksize or 1))

    # ------------------------------------------------------------------ lazy
    def imap(self, func, iterable, chunksize=1):
        return self._executor.map(self._fn(func), iterable, chunksize=chunksize)

    def imap_unordered(self, func, iterable, chunksize=1):
        return self._executor.map_as_completed(self._fn(func), iterable, chunksize=chunksize)

    # ------------------------------------------------------------------ asynchronous
    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        fut = self._executor.submit(self._fn(func), *args, **(kwds or {}))
        return AsyncResult(self._track(fut), callback, error_callback)

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        items = list(iterable)
        fn = self._fn(func)
        futs = [self._executor.submit(fn, x) for x in items]
        import concurrent.futures
        combined = concurrent.futures.Future()

        def gather(_):
            if all(f.done() for f in futs) and not combined.done():
                errors = [f.exception() for f in futs if f.exception() is not None]
                if errors:
                    combined.set_exception(errors[0])
                else:
                    combined.set_result([f.result() for f in futs])
        for f in futs:
            f.add_done_callback(gather)
        if not futs:
            combined.set_result([])
        return AsyncResult(self._track(combined), callback, error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self.map_async(_star(func), iterable, chunksize, callback, error_callback)

    # ------------------------------------------------------------------ lifecycle
    def close(self):
        """No more work; what was submitted finishes."""
        self._state = "CLOSE"

    def terminate(self):
        """Stop now: queued work is cancelled."""
        self._state = "TERMINATE"
        for f in list(self._pending):
            f.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def join(self):
        """Wait for submitted work (after close() or terminate())."""
        if self._state == "RUN":
            raise ValueError("Pool is still running: call close() or terminate() first")
        import concurrent.futures
        concurrent.futures.wait(list(self._pending))
        self._executor.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.terminate()  # as the stdlib does
