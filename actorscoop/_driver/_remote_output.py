"""What workers print, as the driver shows it: lines with their prefix, and bars as bars.

A worker's stdout and stderr reach the driver that owns its task as text (the raylet
forwards it, across nodes too). Two kinds of line are special:

* a progress-bar state written by ``actorscoop.tqdm`` in a task: ``MARK`` and a JSON
  object (id, desc, n, total, unit, unit_scale, postfix, leave, closed, task). The
  driver keeps one tqdm bar per remote bar id, and closes it when the remote bar closes,
  or about ``GRACE`` seconds after its task's result arrived without that;
* a line with carriage returns (a plain tqdm, or any ``\\r`` redraw, in a task): only its
  last state is printed, as a terminal would show it, so the prefix is not overwritten.

Other lines are printed to stdout as ``(prefix) line``, above any bars drawn.

While this driver draws bars, ``print`` to stdout or stderr is made to print above them
too (as Ray does with its remote bars): ``patch_print`` replaces ``builtins.print`` (unless
``ACTORSCOOP_PATCH_PRINT=0``, or something else replaced it already) until the driver
disconnects.
"""
import builtins
import collections
import logging
import os
import sys
import threading
import time

from ..protocol._output import BAR_MARK as MARK, decode_bar_state as decode_state

log = logging.getLogger("actorscoop")

#: seconds after a task's result during which its open bars may still send their close
GRACE = 1.0
#: closed bar ids remembered, so a late update does not draw a closed bar again
REMEMBERED = 4096


def last_redraw(line):
    """What a terminal shows of a line redrawn with carriage returns: its last state."""
    for part in reversed(line.split("\r")):
        if part:
            return part
    return ""


class RemoteOutput:
    """The driver's view of its workers' output. The pump thread calls ``show`` and
    ``task_done``; ``close`` (at shutdown) closes the bars left."""

    def __init__(self, file=None):
        self._file = file  # where bars are drawn (None: tqdm's default, stderr)
        self._lock = threading.RLock()
        self._bars = {}  # bar id -> tqdm drawn here
        self._task_of = {}  # bar id -> task id (bytes) of a task's bar
        self.tasks = {}  # task id -> ids of its open bars; read unlocked: truthy if any
        self._ended = {}  # task id -> when its result came while its bars were open
        self._closed = collections.OrderedDict()  # recently closed bar ids
        self._timer = None

    # ------------------------------------------------------------------ lines
    def show(self, prefix, text):
        if MARK not in text and "\r" not in text and not _bars_drawn():
            _write(sys.stdout, "".join(f"({prefix}) {line}\n" for line in text.splitlines()))
            return
        plain = []
        for line in text.split("\n"):
            at = line.find(MARK)
            if at < 0:
                plain.append(f"({prefix}) {last_redraw(line)}" if "\r" in line else f"({prefix}) {line}")
                continue
            if at > 0:  # the task printed part of a line just before
                plain.append(f"({prefix}) {line[:at]}")
            state = decode_state(line[at:])
            if state is not None:
                self._flush(plain)
                plain = []
                self._apply(prefix, state)
        self._flush(plain)

    def _flush(self, lines):
        if not lines:
            return
        text = "\n".join(lines)
        if _bars_drawn():
            from tqdm.std import tqdm
            try:
                tqdm.write(text, file=sys.stdout)  # above the bars, which are redrawn
            except (OSError, ValueError):
                pass
        else:
            _write(sys.stdout, text + "\n")

    # ------------------------------------------------------------------ bars
    def _apply(self, prefix, state):
        with self._lock:
            bar_id = state["id"]
            if bar_id in self._closed:
                return
            try:
                bar = self._bars.get(bar_id)
                desc = f"({prefix}) {state.get('desc') or ''}".rstrip()
                if bar is None:
                    bar = self._new_bar(bar_id, desc, state)
                _update(bar, desc, state)
                if state.get("closed"):
                    self._close(bar_id, state.get("leave", True))
            except Exception as exc:  # noqa: BLE001 (a bad state must not stop the I/O thread)
                log.warning("dropped a progress bar from %s: its state %s is not valid (%s)",
                            prefix, state, exc)
                if bar_id in self._bars:
                    try:
                        self._close(bar_id, False)
                    except Exception:  # noqa: BLE001 (its own drawing failed: forget it)
                        self._bars.pop(bar_id, None)

    def _new_bar(self, bar_id, desc, state):
        from .._client._tqdm import tqdm
        patch_print()
        options = {"desc": desc, "total": state.get("total"), "unit": state.get("unit") or "it",
                   "mininterval": 0, "miniters": 0, "dynamic_ncols": True}
        if state.get("unit_scale"):
            options["unit_scale"] = state["unit_scale"]
        if self._file is not None:
            options["file"] = self._file
        bar = self._bars[bar_id] = tqdm(**options)
        task = state.get("task")
        if isinstance(task, str):
            try:
                tid = bytes.fromhex(task)
            except ValueError:
                return bar
            self._task_of[bar_id] = tid
            self.tasks.setdefault(tid, set()).add(bar_id)
        return bar

    def _close(self, bar_id, leave=True):
        bar = self._bars.pop(bar_id)
        tid = self._task_of.pop(bar_id, None)
        if tid is not None:
            ids = self.tasks.get(tid, set())
            ids.discard(bar_id)
            if not ids:
                self.tasks.pop(tid, None)
                self._ended.pop(tid, None)
        self._closed[bar_id] = None
        while len(self._closed) > REMEMBERED:
            self._closed.popitem(last=False)
        bar.leave = bool(leave)
        try:
            bar._close_above()
        except (OSError, ValueError, TypeError, OverflowError):  # a state that cannot be drawn
            pass

    # ------------------------------------------------------------------ task ends
    def task_done(self, object_id):
        """A result of a task came: its bars close if their own close does not follow
        within GRACE seconds (it may still be on its way: results can overtake output;
        a worker that crashed sends none)."""
        tid = object_id[:16]
        with self._lock:
            if tid not in self.tasks or tid in self._ended:
                return
            self._ended[tid] = time.monotonic()
            if self._timer is None:
                self._start_timer(GRACE)

    def _start_timer(self, delay):
        self._timer = threading.Timer(delay, self._reap)
        self._timer.daemon = True
        self._timer.start()

    def _reap(self):
        with self._lock:
            self._timer = None
            now = time.monotonic()
            for tid, ended in list(self._ended.items()):
                if now - ended >= GRACE:
                    for bar_id in list(self.tasks.get(tid, ())):
                        self._close(bar_id)
                    self._ended.pop(tid, None)
            if self._ended:
                self._start_timer(GRACE - (now - min(self._ended.values())))

    def close(self):
        """Close every bar still drawn (the driver disconnects)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for bar_id in list(self._bars):
                self._close(bar_id)
            self._ended.clear()
        unpatch_print()


_print = builtins.print


def _print_above_bars(*args, sep=" ", end="\n", file=None, flush=False):
    """``print``, above the bars this process draws when it prints where they are."""
    out = sys.stdout if file is None else file
    if (out is sys.stdout or out is sys.stderr) and _bars_drawn():
        from tqdm.std import tqdm
        with tqdm.external_write_mode(file=out):
            _print(*args, sep=sep, end=end, file=out, flush=True)
    else:
        _print(*args, sep=sep, end=end, file=file, flush=flush)


def patch_print():
    if builtins.print is _print and os.environ.get("ACTORSCOOP_PATCH_PRINT", "1") != "0":
        builtins.print = _print_above_bars


def unpatch_print():
    if builtins.print is _print_above_bars:
        builtins.print = _print


def _bars_drawn():
    """Whether this process draws any tqdm bar now (its own, or workers')."""
    std = sys.modules.get("tqdm.std")
    return std is not None and bool(getattr(std.tqdm, "_instances", None))


def _update(bar, desc, state):
    if desc != bar.desc:
        bar.set_description_str(desc, refresh=False)
    postfix = state.get("postfix")
    if postfix != bar.postfix:
        bar.postfix = postfix
    total = state.get("total")
    if total != bar.total:
        bar.total = total
    n = state["n"]
    if n < bar.n:
        bar.reset(total)
    bar.update(n - bar.n)  # draws: the bar's miniters and mininterval are 0


def _write(out, text):
    try:
        out.write(text)
        out.flush()
    except (OSError, ValueError):
        pass
