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
import time

from .exceptions import GetTimeoutError

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
    from ._tqdm import tqdm
    try:
        return tqdm(**options)
    except (TypeError, KeyError) as exc:
        raise TypeError(f"progress={options!r}: tqdm refused these options ({exc}); pass "
                        "True, or a dict of tqdm's keyword arguments such as "
                        "{'desc': 'fitting', 'unit': 'fit'}") from None


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
        if done and not self.bar.update(sum(self._weights.pop(r) for r in done)):
            self.bar.refresh()  # update() draws only past the bar's mininterval

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
        self.bar._close_above()


def get(core, refs, timeout, copy, options):
    """``core.get(refs, ...)`` with a bar counting the values as they arrive."""
    deadline = None if timeout is None else time.monotonic() + timeout
    progress = RefProgress(core, new_bar(bar_options(options, total=len(refs))))
    for r in refs:
        progress.add(r)
    waiting = list(dict.fromkeys(refs))

    def step(seconds):
        nonlocal waiting
        _ready, waiting = core.wait(waiting, len(waiting), seconds)
        return True if not waiting else None

    try:
        progress.pace(step, deadline)
    finally:
        progress.close()
    if waiting:
        raise GetTimeoutError(
            f"get() timed out after {timeout} s with {len(waiting)} of {len(refs)} values "
            f"not ready (first: {waiting[0].id.hex()}); the tasks keep running: call get() "
            "again, or cancel() them")
    return core.get(refs, None, copy)


def wait(core, refs, num_returns, timeout, options):
    """``core.wait(refs, num_returns, timeout)`` with a bar counting ready refs up to
    ``num_returns``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    progress = RefProgress(core, new_bar(bar_options(options, total=num_returns)))
    counted = 0

    def step(seconds):
        nonlocal counted
        ready, _ = core.wait(refs, num_returns, seconds)
        if len(ready) > counted:
            progress.bar.update(len(ready) - counted)
            counted = len(ready)
        return True if counted >= num_returns else None

    try:
        progress.pace(step, deadline)
    finally:
        progress.close()
    return core.wait(refs, num_returns, 0)
