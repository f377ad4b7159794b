"""Executor, and the module-level functions of ``actorscoop.futures`` built on it."""
import concurrent.futures
import functools
import itertools
import threading
import weakref

from .._client import _context
from .._client._object_ref import ObjectRef
from . import _runner
from ._future import Future
from ._map import MapIterator
from ._waiting import wait as _wait_futures


def _ref_of(arg):
    t = type(arg)
    if t is ObjectRef:
        return arg
    if t is Future:
        return arg._ref
    return None


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` whose calls run as actorscoop tasks.

    ``max_workers`` is what ``_max_workers`` and ``size`` report (default: the cluster's
    CPUs, which is also what bounds parallelism: tasks take one CPU each). ``address``
    connects to a running node when this process is not connected yet (see
    ``actorscoop.init``). Leaving a ``with`` block or ``shutdown()`` does not stop the
    node: ``actorscoop.shutdown()`` (or the end of the script) does.
    """

    def __init__(self, max_workers=None, address=None):
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers <= 0):
            raise ValueError(f"max_workers must be an int greater than 0, got {max_workers!r}")
        if address is not None and _context.current_or_none() is None:
            from .._driver._api import init
            init(address=address)
        self._core = _context.current()
        self._requested_workers = max_workers
        self._cpus = None
        self._lock = threading.Lock()
        self._stopped = False
        self._futures = {}  # submitted and not done, in submission order
        self._maps = weakref.WeakSet()

    # ------------------------------------------------------------------ sizes
    @property
    def _max_workers(self):
        if self._requested_workers is not None:
            return self._requested_workers
        if self._cpus is None:
            self._cpus = _cluster_cpus(self._core)
        return self._cpus

    @property
    def size(self):
        """How many calls run at once: ``_max_workers`` (dynesty reads ``pool.size``)."""
        return self._max_workers

    # ------------------------------------------------------------------ work
    def submit(self, fn, /, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` as a task; return its Future.

        ObjectRefs and Futures passed directly as positional arguments arrive as their
        values, and the task waits for them. Raises RuntimeError after shutdown().
        """
        if self._stopped:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        rf = _runner.registry.get(_runner.SINGLE, fn, _runner.main_info())
        args, deps = _runner.split_refs(args, _ref_of)
        blob, extra = _runner.pack((args, kwargs))
        fut = Future(rf.remote(blob, extra, *deps), rf)
        futures = self._futures
        futures[fut] = None
        fut.add_done_callback(lambda f: futures.pop(f, None))
        return fut

    def map(self, fn, *iterables, timeout=None, chunksize=None, buffersize=None, progress=None):
        """``fn`` over the zipped iterables, as an iterator of results in input order.

        The input is sent in chunks of ``chunksize`` calls, one task each (default: about
        32 chunks per CPU). At most ``buffersize`` chunks (default 4096) are in flight;
        more input is read as results are taken. The iterator raises the first failed
        call's exception, and ``concurrent.futures.TimeoutError`` if a result is not ready
        ``timeout`` seconds after this call; either, or closing the iterator, cancels the
        remaining chunks. ``progress=True`` (or a dict of tqdm options) draws a bar of the
        calls done, advancing as chunks finish.
        """
        if self._stopped:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return MapIterator(fn, iterables, timeout, chunksize, owner=self, window=buffersize,
                           progress=progress)

    def map_as_completed(self, fn, *iterables, timeout=None, chunksize=None, progress=None):
        """Like map(), but results come in the order the chunks finish."""
        if self._stopped:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return MapIterator(fn, iterables, timeout, chunksize, ordered=False, owner=self,
                           progress=progress)

    def _track(self, iterator):
        self._maps.add(iterator)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Accept no more work. ``cancel_futures`` cancels what has not finished;
        ``wait`` blocks until every submitted call and map chunk is done."""
        with self._lock:
            self._stopped = True
        if cancel_futures:
            # Last first: the queued tasks go before running ones free their CPUs.
            for f in reversed(list(self._futures)):
                f.cancel()
            for m in list(self._maps):
                m._cancel_pending()
        if wait:
            _wait_futures(list(self._futures))
            core = _context.current_or_none()
            if core is not None and core is self._core:
                for m in list(self._maps):
                    refs = m._pending_refs()
                    if refs:
                        core.wait(refs, len(refs), None)


def _cluster_cpus(core):
    try:
        from .._driver._api import cluster_resources
        return max(1, int(cluster_resources().get("CPU", 0)))
    except Exception:
        return max(1, int(getattr(core, "num_cpus", 1) or 1))


# ---------------------------------------------------------------------- module level
_default = None
_default_lock = threading.Lock()


def default_executor():
    """The executor behind ``futures.submit``/``map``: one per connection to a node."""
    global _default
    ex = _default
    core = _context.current()
    if ex is None or ex._core is not core or ex._stopped:
        with _default_lock:
            ex = _default
            if ex is None or ex._core is not core or ex._stopped:
                ex = _default = Executor()
    return ex


def shutdown(wait=True, cancel_futures=False):
    """Wait for (or, with ``cancel_futures``, cancel) the work of the module-level
    functions. They may be used again afterwards (SCOOP's shutdown did nothing)."""
    global _default
    with _default_lock:
        ex, _default = _default, None
    if ex is not None:
        ex.shutdown(wait=wait, cancel_futures=cancel_futures)


def map_reduce(map_fn, reduce_fn, *iterables, timeout=None, chunksize=None, progress=None):
    """``functools.reduce(reduce_fn, map(map_fn, *iterables))``, in parallel: each chunk
    is mapped and folded in its task, and the chunks' partial results are folded here,
    in input order (so ``reduce_fn`` must be associative, need not be commutative).
    Raises TypeError for empty input."""
    ex = default_executor()
    it = MapIterator(map_fn, iterables, timeout, chunksize, owner=ex,
                     kind=_runner.REDUCE, reduce_op=reduce_fn, progress=progress)
    with it:
        partials = list(it)
    if not partials:
        raise TypeError("mapReduce() of empty iterables (there is nothing to reduce)")
    return functools.reduce(reduce_fn, partials)


def map_scan(map_fn, reduce_fn, *iterables, timeout=None, chunksize=None, progress=None):
    """The list of prefix reductions of ``map(map_fn, *iterables)``:
    ``[v0, f(v0, v1), f(f(v0, v1), v2), ...]`` (``itertools.accumulate``)."""
    ex = default_executor()
    with MapIterator(map_fn, iterables, timeout, chunksize, owner=ex, progress=progress) as it:
        return list(itertools.accumulate(it, reduce_fn))
