"""wait() and as_completed() over futures, in drivers and in workers.

In a driver the I/O thread completes futures, so the standard library's functions work
as they are. A worker has no such thread: waiting there serves the worker's socket
(``core.wait`` on the futures' refs) until enough futures are done.
"""
import concurrent.futures
import time

from .._client import _context
from ._future import Future

FIRST_COMPLETED = concurrent.futures.FIRST_COMPLETED
FIRST_EXCEPTION = concurrent.futures.FIRST_EXCEPTION
ALL_COMPLETED = concurrent.futures.ALL_COMPLETED
DoneAndNotDoneFutures = concurrent.futures._base.DoneAndNotDoneFutures

_FOREIGN_SLICE = 0.05  # s: how long a worker waits on other futures between serving


def _serving(fs):
    return any(type(f) is Future and f._serves and not f.done() for f in fs)


def _finished(done, not_done, return_when):
    if not not_done:
        return True
    if return_when == FIRST_COMPLETED:
        return bool(done)
    if return_when == FIRST_EXCEPTION:
        return any(not f.cancelled() and f.exception(0) is not None for f in done)
    return False


def wait(fs, timeout=None, return_when=ALL_COMPLETED):
    """Wait for the futures ``fs`` (ours or any ``concurrent.futures.Future``).

    Returns ``(done, not_done)``, two sets; never raises on timeout. ``return_when`` is
    FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED, as in ``concurrent.futures.wait``.
    """
    if return_when not in (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED):
        raise ValueError(f"return_when must be FIRST_COMPLETED, FIRST_EXCEPTION or "
                         f"ALL_COMPLETED, got {return_when!r}")
    fs = set(fs)
    if not _serving(fs):
        return concurrent.futures.wait(fs, timeout, return_when)
    deadline = None if timeout is None else time.monotonic() + timeout
    core = _context.current()
    while True:
        done = {f for f in fs if f.done()}
        not_done = fs - done
        if _finished(done, not_done, return_when):
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        _serve_once(core, not_done, left)
    return DoneAndNotDoneFutures(done, not_done)


def _serve_once(core, not_done, left):
    """Serve until one of ``not_done`` may have finished, or ``left`` seconds pass."""
    refs = [f._ref for f in not_done if type(f) is Future]
    foreign = len(refs) < len(not_done)
    if refs:
        slice_ = left if not foreign else (_FOREIGN_SLICE if left is None else min(left, _FOREIGN_SLICE))
        core.wait(refs, 1, slice_)
    if foreign:
        others = [f for f in not_done if type(f) is not Future]
        concurrent.futures.wait(others, 0 if refs else (_FOREIGN_SLICE if left is None else
                                                         min(left, _FOREIGN_SLICE)),
                                FIRST_COMPLETED)


def as_completed(fs, timeout=None):
    """Yield the futures ``fs`` as they finish (those already done first).

    Raises ``concurrent.futures.TimeoutError`` if some are not done ``timeout`` seconds
    after the call.
    """
    fs = list(dict.fromkeys(fs))
    if not _serving(fs):
        yield from concurrent.futures.as_completed(fs, timeout)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    core = _context.current()
    pending = set(fs)
    while pending:
        done = [f for f in pending if f.done()]
        for f in done:
            pending.discard(f)
            yield f
        if not pending:
            return
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise concurrent.futures.TimeoutError(
                f"{len(pending)} (of {len(fs)}) futures unfinished")
        _serve_once(core, pending, left)
