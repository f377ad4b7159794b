"""futures.map and its relatives: chunked tasks, results in input order, lazily.

The input is cut into chunks of ``chunksize`` argument tuples; each chunk is one task
that calls the function on each tuple and returns the list of values. At most
``window`` chunks are in flight: the iterator tops the window up as it hands out
results, so a generator input is read lazily and memory stays bounded, while the
cluster always has work queued.
"""
import collections
import concurrent.futures
import itertools
import time

from .._client import _context
from .._driver import _progress
from ..exceptions import GetTimeoutError, TaskCancelledError
from . import _runner

#: chunks in flight per map, at most (it keeps every CPU busy; bounds memory)
WINDOW = 4096
#: with chunksize=None and a known length, each chunk takes remaining/(GUIDED * CPUs)
#: items ("guided" scheduling): few large chunks first, small ones at the end so the
#: CPUs finish together
GUIDED = 2
#: with chunksize=None and no len(), aim for this many chunks per CPU
CHUNKS_PER_CPU = 32
#: how much of an input without len() is read ahead to choose the chunk size
PROBE = 8192


def _cpus(core):
    return max(1, int(getattr(core, "num_cpus", 1) or 1))


def plan(iterables, chunksize, core):
    """(iterator of argument tuples, chunk sizes, window in chunks).

    The chunk sizes are an iterator: ``chunksize`` forever when given; otherwise
    guided sizes for an input of known length (read ahead up to PROBE items when it
    has no len()), and a fixed size for a long input without len() (maybe endless),
    which also gets a smaller window.
    """
    args = zip(*iterables)
    if chunksize is not None:
        if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
            raise ValueError(f"chunksize must be an int >= 1, got {chunksize!r}")
        return args, itertools.repeat(chunksize), WINDOW
    cpus = _cpus(core)
    try:
        n = min(len(it) for it in iterables)
    except TypeError:
        head = list(itertools.islice(args, PROBE))
        n = len(head)
        args = itertools.chain(head, args)
        if n == PROBE:
            return args, itertools.repeat(max(1, n // (CHUNKS_PER_CPU * cpus))), \
                4 * CHUNKS_PER_CPU * cpus
    return args, guided_sizes(n, GUIDED * cpus), WINDOW


def _length(iterables):
    """How many calls a map makes, if its inputs tell (None for iterators)."""
    try:
        return min(len(it) for it in iterables)
    except TypeError:
        return None


def guided_sizes(n, parts):
    """Chunk sizes for n items: each ceil(remaining / parts), until none remain."""
    remaining = n
    while remaining > 0:
        size = -(-remaining // parts)
        yield size
        remaining -= size


class MapIterator:
    """The iterator ``futures.map`` returns: results in input order.

    ``__next__`` raises the function's exception for the item that failed (after the
    values of the items before it), and ``concurrent.futures.TimeoutError`` when a result
    is not there ``timeout`` seconds after the call to map. Either of these, ``close()``,
    leaving a ``with`` block, or dropping the iterator cancels the chunks not yet done.
    """

    def __init__(self, fn, iterables, timeout=None, chunksize=None, ordered=True,
                 owner=None, kind=_runner.CHUNK, reduce_op=None, window=None, progress=None):
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        if not callable(fn):
            raise TypeError(f"map() needs a callable, got {type(fn).__name__}")
        self._core = _context.current()
        self._end = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._input, self._sizes, default_window = plan(iterables, chunksize, self._core)
        self._chunksize = chunksize
        self._rf = _runner.registry.get(kind, fn, _runner.main_info())
        self._reduce_op = reduce_op
        self._window = default_window if window is None else int(window)
        if self._window < 1:
            raise ValueError(f"buffersize must be an int >= 1, got {window!r}")
        self._ordered = ordered
        # refs of the chunks in flight: in input order, or (as-completed) a dict as a set
        self._pending = collections.deque() if ordered else {}
        self._ready = collections.deque()  # values handed out next
        self._error = None  # raised once _ready is empty
        self._exhausted = False
        self._closed = False
        # map_as_completed: refs reported as they finish
        self._completions = None if ordered else _Completions(self._core)
        self._progress = None  # a RefProgress counting items as their chunks finish
        options = _progress.bar_options(progress, total=_length(iterables))
        if options is not None:
            self._progress = _progress.RefProgress(self._core, _progress.new_bar(options))
        self._owner = owner
        if owner is not None:
            owner._track(self)
        self._fill()

    # ------------------------------------------------------------------ submitting
    def _fill(self):
        pending, sizes = self._pending, self._sizes
        while not self._exhausted and len(pending) < self._window:
            size = next(sizes, 0)
            chunk = list(itertools.islice(self._input, size)) if size else None
            if not chunk:
                self._exhausted = True
                break
            payload = chunk if self._reduce_op is None else (chunk, self._reduce_op)
            blob, extra = _runner.pack(payload)
            ref = self._rf.remote(blob, extra)
            if self._progress is not None:
                self._progress.add(ref, len(chunk))
            if self._completions is None:
                pending.append(ref)
            else:
                pending[ref] = None
                self._completions.watch(ref)
        if self._exhausted:
            self._input = None

    # ------------------------------------------------------------------ iterating
    def __iter__(self):
        return self

    def __next__(self):
        if self._ready:
            return self._ready.popleft()
        if self._error is not None:
            err, self._error = self._error, None
            self.close()
            raise err
        if self._closed or (not self._pending and self._exhausted):
            self._closed = True
            self._end_progress()
            raise StopIteration
        try:
            value = self._next_value()
        except BaseException:
            self.close()
            raise
        self._fill()
        value = _runner.unpack_values(value)
        if type(value) is _runner.Failed:
            self._ready.extend(value.values)
            self._error = value.exception()
        else:
            self._ready.extend(value)
        return self.__next__()

    def _remaining(self):
        if self._end is None:
            return None
        return max(0.0, self._end - time.monotonic())

    def _next_value(self):
        """The value of the next chunk: the next in input order, or (as-completed) the
        first to finish. Raises TimeoutError at the deadline, CancelledError for a
        cancelled chunk."""
        remaining = self._remaining()
        progress = self._progress
        if self._ordered:
            ref = self._pending[0]
            if progress is not None:  # wait in slices, redrawing the bar between them
                progress.pace(lambda s: self._core.wait([ref], 1, s)[0] or None, self._end)
                remaining = self._remaining()
        else:
            if progress is None:
                ref = self._completions.next(remaining)
            else:
                ref = progress.pace(self._completions.next, self._end)
            if ref is None:
                self._timed_out()
        try:
            value = self._core.get([ref], remaining)[0]
        except GetTimeoutError:
            self._timed_out()
        except TaskCancelledError as exc:
            raise concurrent.futures.CancelledError(str(exc)) from None
        if self._ordered:
            self._pending.popleft()
        else:
            del self._pending[ref]
        return value

    def _timed_out(self):
        n = len(self._pending)
        self.close()
        raise concurrent.futures.TimeoutError(
            f"map(): a result was not ready {self._timeout} s after the call "
            f"({n} chunks were still pending; they are cancelled)")

    # ------------------------------------------------------------------ stopping
    def close(self):
        """Stop: cancel the chunks still queued or running and read no more input."""
        if self._closed and not self._pending:
            return
        self._closed = True
        self._exhausted = True
        self._input = None
        pending, self._pending = self._pending, collections.deque()
        core = _context.current_or_none()
        if core is not None and core is self._core:
            # Last first: the queued chunks go before running ones free their CPUs.
            cancelled = False
            for ref in reversed(list(pending)):
                if not core.is_ready(ref):
                    try:
                        core.cancel(ref, False)
                        cancelled = True
                    except Exception:
                        break  # the node is gone
            if cancelled:
                _runner.registry.forget(self._rf)
        if self._completions is not None:
            self._completions.close()
        self._end_progress()

    def _end_progress(self):
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.close()

    def _cancel_pending(self):
        """Executor.shutdown(cancel_futures=True): the chunks not done fail as cancelled."""
        if self._pending:
            self.close()
            self._error = self._error or concurrent.futures.CancelledError(
                "map(): the executor was shut down with cancel_futures=True")

    def _pending_refs(self):
        return list(self._pending)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class _Completions:
    """Refs in the order they complete (driver: the I/O thread reports them; worker:
    waiting serves the socket)."""

    def __init__(self, core):
        import queue
        self._core = core
        self._queue = queue.SimpleQueue()
        self._watched = []
        self._serves = None

    def watch(self, ref):
        fut = ref.future()
        if self._serves is None:
            self._serves = type(fut) is not concurrent.futures.Future
        if self._serves:
            self._watched.append(ref)
        else:
            fut.add_done_callback(lambda _f, ref=ref: self._queue.put(ref))

    def next(self, timeout):
        import queue
        if not self._serves:
            try:
                return self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
        core = self._core
        ready = [r for r in self._watched if core.is_ready(r)]
        if not ready:
            ready, _ = core.wait(self._watched, 1, timeout)
            if not ready:
                return None
        ref = ready[0]
        self._watched.remove(ref)
        return ref

    def close(self):
        self._watched = []


