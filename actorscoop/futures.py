"""SCOOP's ``futures`` module on actorscoop, following PEP 3148.

    from actorscoop import futures

    def evaluate(x):
        return x * x

    if __name__ == "__main__":
        print(list(futures.map(evaluate, range(10))))

Run it as ``python script.py`` (an embedded local node starts), ``python -m actorscoop
-n 4 script.py``, or against a running node (``ACTORSCOOP_ADDRESS``). Functions may be
lambdas and closures; tasks may submit tasks, to any depth.

Every Future is a ``concurrent.futures.Future``: ``concurrent.futures.wait``,
``as_completed``, ``asyncio.wrap_future`` and ``loop.run_in_executor(Executor(), ...)``
work on them. See docs/futures.md.
"""
from ._futures import _executor, _map
from ._futures._executor import Executor
from ._futures._future import Future
from ._futures._waiting import (
    ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait,
)

__all__ = [
    "submit", "map", "map_as_completed", "as_completed", "wait", "mapReduce", "mapScan",
    "shutdown", "Executor", "Future", "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED",
]


def submit(func, *args, **kwargs):
    """Run ``func(*args, **kwargs)`` as a task; return its Future at once."""
    return _executor.default_executor().submit(func, *args, **kwargs)


def map(func, *iterables, timeout=None, chunksize=None, progress=None, **ignored):  # noqa: A001
    """Like the builtin ``map``, in parallel: an iterator of ``func``'s results in input
    order, stopping at the shortest iterable.

    The calls travel in chunks of ``chunksize`` (default: about 32 chunks per CPU; pass
    ``chunksize=1`` when single calls are long and uneven). The iterator raises the first
    failed call's exception (after the results before it), and
    ``concurrent.futures.TimeoutError`` when a result is not ready ``timeout`` seconds
    after this call. Either, ``close()``, or dropping the iterator cancels the calls not
    yet done.

    ``progress=True``, or a dict of tqdm options (``{"desc": "fit", "unit": "fit"}``),
    draws a progress bar of the calls done, with count, rate and ETA; it advances as
    chunks finish, while the iterator is being read (see docs/progress.md).

    Other keywords are accepted and ignored, as SCOOP does (a warning says so, once per
    keyword name).
    """
    _warn_ignored("map", ignored)
    return _executor.default_executor().map(func, *iterables, timeout=timeout,
                                             chunksize=chunksize, progress=progress)


def map_as_completed(func, *iterables, timeout=None, chunksize=None, progress=None, **ignored):
    """Like map(), but results come as soon as they are ready, in any order."""
    _warn_ignored("map_as_completed", ignored)
    return _executor.default_executor().map_as_completed(func, *iterables, timeout=timeout,
                                                         chunksize=chunksize, progress=progress)


def mapReduce(mapFunc, reductionOp, *iterables, timeout=None, chunksize=None,  # noqa: N802
              progress=None, **ignored):
    """Map, then fold the results with ``reductionOp`` (associative) into one value.
    Folding starts in the tasks; the result is ``functools.reduce(reductionOp,
    map(mapFunc, *iterables))``. Raises TypeError when the iterables are empty."""
    _warn_ignored("mapReduce", ignored)
    return _executor.map_reduce(mapFunc, reductionOp, *iterables, timeout=timeout,
                                chunksize=chunksize, progress=progress)


def mapScan(mapFunc, reductionOp, *iterables, timeout=None, chunksize=None,  # noqa: N802
            progress=None, **ignored):
    """Map, then return every prefix reduction, in order:
    ``list(itertools.accumulate(map(mapFunc, *iterables), reductionOp))``."""
    _warn_ignored("mapScan", ignored)
    return _executor.map_scan(mapFunc, reductionOp, *iterables, timeout=timeout,
                              chunksize=chunksize, progress=progress)


def shutdown(wait=True, cancel_futures=False):
    """Wait for (or cancel) the work submitted through this module. The module can be
    used again afterwards."""
    _executor.shutdown(wait=wait, cancel_futures=cancel_futures)


_warned = set()


def _warn_ignored(where, ignored):
    """SCOOP's map functions take ``**kwargs`` and ignore them; so do these, saying so once
    per keyword name."""
    new = sorted(set(ignored) - _warned)
    if new:
        import warnings
        _warned.update(new)
        warnings.warn(f"futures.{where}() ignores the keyword argument(s) "
                      f"{', '.join(new)} (as SCOOP does); it uses timeout=, chunksize= and "
                      "progress=", RuntimeWarning, stacklevel=3)


del _map
