"""Progress bars for waits in this process: ``get``/``wait(..., progress=...)`` and the
``progress=`` option of ``futures.map`` and its relatives.

``progress`` is False/None (no bar), True (a bar with defaults), or a dict of tqdm
keyword arguments (``desc``, ``unit``, ``leave``, ``position``, ``ncols``, ``file``,
``disable``, ...; ``total`` overrides the count we know). The bar is an
``actorscoop.tqdm``: in a driver it is drawn in place, in a task the driver draws it.

A bar counts refs as their values arrive, weighted (a map chunk counts its items). The
caller's waits are cut into slices of ``TICK`` seconds, and the bar is updated between
them, at most every ``TICK`` seconds: the cost does not grow with the number of results.
"""
import collections.abc
import threading
import time

from ..exceptions import GetTimeoutError

#: seconds between redraws while waiting
TICK = 0.1


def bar_options(progress, **defaults):
    """tqdm keyword arguments for ``progress`` (None when no bar is wanted).

    Raises TypeError for a value that is neither a bool, None, nor a dict."""
    if progress is None or progress is False:
        return None
    # The bar is updated every TICK at most: it may draw at each update.
    defaults = {"mininterval": 0, "miniters": 0, **defaults}
    if progress is True:
        return defaults
    if isinstance(progress, collections.abc.Mapping):
        return {**defaults, **progress}
    raise TypeError(f"progress must be True, False or a dict of tqdm options such as "
                    f"{{'desc': 'fitting', 'unit': 'fit'}}; got {type(progress).__name__}")


def new_bar(options):
    """A bar made with ``options``; TypeError (naming them) if tqdm refuses them."""
    from ._remote_output import patch_print
    from .._client._tqdm import tqdm, _worker_core
    try:
        bar = tqdm(**options)
    except (TypeError, KeyError) as exc:
        raise TypeError(f"progress={options!r}: tqdm refused these options ({exc}); pass "
                        "True, or a dict of tqdm's keyword arguments such as "
                        "{'desc': 'fitting', 'unit': 'fit'}") from None
    if _worker_core() is None:  # drawn here: print() in the loop prints above it
        patch_print()
    return bar


class RefProgress:
    """A bar that counts refs as their values arrive in this process."""

    def __init__(self, core, bar):
        self._core = core
        self.bar = bar
        self._weights = {}  # ref -> items it stands for, not yet counted
        self._polled = 0.0

    def add(self, ref, weight=1):
        self._weights[ref] = self._weights.get(ref, 0) + weight

    def poll(self):
        """Count the refs whose values arrived; redraw if the count changed."""
        self._polled = time.monotonic()
        is_ready = self._core.is_ready
        done = [r for r in self._weights if is_ready(r)]
        if done:
            _show(self.bar, self.bar.n + sum(self._weights.pop(r) for r in done))

    def pace(self, step, deadline):
        """Call ``step(seconds)`` until it returns something but None (returned), or
        ``deadline`` (monotonic; None: no deadline) passes (None), redrawing between."""
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            result = step(TICK if left is None else max(0.0, min(TICK, left)))
            if result is None or time.monotonic() - self._polled >= TICK:
                self.poll()
            if result is not None or (left is not None and left <= TICK):
                return result

    def close(self):
        self.poll()
        _close(self.bar)


def get(core, refs, timeout, copy, options):
    """``core.get(refs, ...)`` with a bar counting the values as they arrive."""
    deadline = None if timeout is None else time.monotonic() + timeout
    unique = list(dict.fromkeys(refs))
    bar = new_bar(bar_options(options, total=len(unique)))
    try:
        done = _count_arrivals(core, unique, len(unique), deadline, bar)
    finally:
        _close(bar)
    if not done:
        waiting = [r for r in unique if not core.is_ready(r)]
        raise GetTimeoutError(
            f"get() timed out after {timeout} s with {len(waiting)} of {len(refs)} values "
            f"not ready (first: {waiting[0].id.hex()}); the tasks keep running: call get() "
            "again, or cancel() them")
    return core.get(refs, None, copy)


def wait(core, refs, num_returns, timeout, options):
    """``core.wait(refs, num_returns, timeout)`` with a bar counting ready refs up to
    ``num_returns``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = new_bar(bar_options(options, total=num_returns))
    try:
        _count_arrivals(core, refs, num_returns, deadline, bar)
    finally:
        _close(bar)
    return core.wait(refs, num_returns, 0)


def _count_arrivals(core, refs, num, deadline, bar):
    """Block until ``num`` of ``refs`` (distinct) have values here, or ``deadline``;
    ``bar`` shows how many have. True if ``num`` were reached.

    Where another thread files the values (a driver's I/O thread; the main loop of a
    threaded actor), one waiter counts them as they come: each tick costs O(1), not
    O(len(refs)) (30 ms for 100 000 refs). A worker's main thread files them itself while
    it waits, so there waits are cut into slices of ``TICK`` (``core.wait``)."""
    if threading.get_ident() == getattr(core, "_main_thread", None):
        def step(seconds):
            ready, _ = core.wait(refs, num, seconds)
            _show(bar, len(ready))
            return True if len(ready) >= num else None
        return RefProgress(core, bar).pace(step, deadline) is not None
    oids = [r.id for r in refs]
    core._request(oids)
    waiter = core._add_waiter(oids, num)
    if waiter is None:
        _show(bar, num)
        return True
    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            done = waiter.event.wait(TICK if left is None else max(0.0, min(TICK, left)))
            _show(bar, num - max(0, waiter.still_needed))
            if done or (left is not None and left <= TICK):
                return done
    finally:
        core._remove_waiter(waiter)


def _show(bar, count):
    if count > bar.n and not bar.update(count - bar.n):
        bar.refresh()  # update() draws only past the bar's mininterval


def _close(bar):
    bar._close_above()
