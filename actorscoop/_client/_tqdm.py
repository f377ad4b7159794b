"""``actorscoop.tqdm``: a tqdm whose bars, inside a task, are drawn by the driver.

In a driver (or any process not running tasks) it is tqdm itself. Inside a worker the
constructor returns a ``_TaskBar``: a tqdm that draws nothing locally and instead writes
its state as one line to the worker's stdout, which already reaches the driver that owns
the task (the raylet forwards worker output; see ``_remote_output``). The driver draws one
bar per remote bar. Updates leave a worker at most ``UPDATE_INTERVAL`` apart per bar
(closing always goes out), so a tight loop never floods the node.

A bar made by a task (not an actor's) is closed when its task ends, however it ends; a
bar made in an actor lives until it is closed (or collected).
"""
import inspect
import itertools
import os
import sys
import time

from tqdm.std import tqdm as _std_tqdm

from . import _context
from ..protocol._output import encode_bar_state

#: seconds between two updates of one remote bar, at least
UPDATE_INTERVAL = 0.1

_ids = itertools.count()
_token = os.urandom(4).hex()  # tells this process's bars from those of other processes
_token_pid = os.getpid()


def _worker_core():
    """The core client of this process if it runs tasks (a worker's), else None."""
    core = _context.current_or_none()
    return core if core is not None and core.runs_tasks else None


class tqdm(_std_tqdm):  # noqa: N801 (the name people import)
    """tqdm, drawn by the driver when made inside a task or actor.

    Use it as tqdm: ``for x in actorscoop.tqdm(items, desc="fit"): ...``, ``update()``,
    ``set_description()``, ``set_postfix()``, ``close()``, ``with``. In a driver it is
    plain ``tqdm.tqdm``. In a task the driver shows it as ``(fn pid=N) desc: 40%|...``,
    with count, rate and ETA; ``desc``, ``total``, ``unit``, ``unit_scale``, ``postfix``
    and ``leave`` are carried over, other display options (``ncols``, ``bar_format``,
    ``position``, ...) are the driver's.
    """

    def __new__(cls, *args, **kwargs):
        if cls is tqdm and _worker_core() is not None:
            cls = _TaskBar
        return super().__new__(cls, *args, **kwargs)

    def _close_above(self):
        """Close; a bar that stays on screen is printed as a line above the bars still
        drawn. (tqdm's own close prints it on the top bar's line and moves down one,
        which leaves stale copies of the bars below it when other bars are open: ours
        close in any order, theirs from the inside out.)"""
        if getattr(self, "disable", True):
            return
        if not (self.pos == 0 if self.leave is None else self.leave):
            self.close()
            return
        with self.get_lock():
            self._ema_dt = lambda: None  # the last line shows the average rate, as tqdm's
            last = str(self)
            self.leave = False
            self.close()  # clears its line; below the top one, leaves the cursor at its end
            self.write("\r" + last, file=self.fp)


class _Sink:
    """Where a task's bar 'draws': nowhere (its state goes to the driver instead)."""

    @staticmethod
    def write(_s):
        return 0

    @staticmethod
    def flush():
        pass


_SINK = _Sink()
_INIT = inspect.signature(_std_tqdm.__init__)


class _TaskBar(tqdm):
    """A tqdm inside a worker: sends its state to the driver instead of drawing."""

    monitor_interval = 0  # no tqdm monitor thread in workers

    def __init__(self, *args, **kwargs):
        global _token, _token_pid
        if _token_pid != os.getpid():  # forked: a new process needs its own ids
            _token, _token_pid = os.urandom(4).hex(), os.getpid()
        self._bar_id = f"{_token}-{next(_ids)}"
        self._sent_at = 0.0
        self._closing = False
        core = _worker_core()
        spec = core.current_task() if core is not None else None
        self._task = spec.task_id if spec is not None and spec.actor_id is None else None
        bound = _INIT.bind(self, *args, **kwargs)
        bound.arguments["file"] = _SINK
        given = bound.arguments.get("mininterval", 0.1)
        bound.arguments["mininterval"] = max(float(given), UPDATE_INTERVAL)
        super().__init__(*bound.args[1:], **bound.kwargs)
        if self._task is not None:
            _open_task_bars.setdefault(self._task, []).append(self)
            _tasks_with_bars.add(self._task)
            if _close_task_bars not in core.task_end_hooks:
                core.task_end_hooks.append(_close_task_bars)

    def display(self, msg=None, pos=None):
        if not self._closing:
            now = time.monotonic()
            if now - self._sent_at >= 0.9 * UPDATE_INTERVAL:  # 0.9: clock jitter
                self._sent_at = now
                self._send(False)
        return True

    def _close_above(self):
        self.close()  # the driver draws it

    def close(self):
        if getattr(self, "disable", True):
            return
        self._closing = True
        super().close()
        self._send(True)
        bars = _open_task_bars.get(self._task) if self._task is not None else None
        if bars is not None:
            bars[:] = [b for b in bars if b is not self]  # by identity: tqdm's == compares positions
            if not bars:
                del _open_task_bars[self._task]

    def _send(self, closed):
        line = encode_bar_state({
            "id": self._bar_id, "desc": self.desc, "n": self.n, "total": self.total,
            "unit": self.unit, "unit_scale": self.unit_scale, "postfix": self.postfix,
            "leave": self.leave is not False, "closed": closed,
            "task": self._task.hex() if self._task is not None else None})
        # the worker's real stdout (a task may redirect sys.stdout), marked with this task
        out = getattr(_worker_core(), "task_stdout", None) or sys.__stdout__
        try:
            out.write(line)
            out.flush()
        except (AttributeError, OSError, ValueError):
            pass  # no stdout (closed or detached): the bar is not shown


_open_task_bars = {}  # task id -> its bars not closed yet (in this worker)
_tasks_with_bars = set()  # tasks running here that made a bar


def _close_task_bars(spec):
    """The worker's task-end hook: close the bars the finished task left open. True if
    the task made bars: its result then travels behind its output (through the raylet,
    which forwards a worker's output before its result), so the driver has drawn the
    bars' last states when get() returns."""
    bars = _open_task_bars.pop(spec.task_id, None)
    for bar in bars or ():
        try:
            bar.close()
        except Exception:  # noqa: BLE001 (the task's result must still go out)
            pass
    if spec.task_id in _tasks_with_bars:
        _tasks_with_bars.discard(spec.task_id)
        return True
    return False
