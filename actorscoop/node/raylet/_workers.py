"""The raylet's table of worker processes: ids, pids, log and control pipes.

What a worker prints goes to its raylet through a pipe; the raylet forwards it to the
driver and keeps it in ``<session>/logs/worker-<pid>.log`` (`actorscoop logs`), which
rotates to ``worker-<pid>.log.1`` when it passes ``log_max_bytes``."""
import os
import signal

from ..._common import _session
from ..._common._ids import random_id
from ...protocol._output import TASK_MARK


class WorkerProc:
    __slots__ = ("worker_id", "pid", "log_fd", "ctrl_fd", "functions", "connected",
                 "log_file", "partial", "exit_code", "actor_id", "log_eof", "log_bytes", "reclaiming",
                 "output_task")

    def __init__(self, worker_id, log_fd, ctrl_fd):
        self.worker_id = worker_id
        self.pid = None
        self.log_fd = log_fd  # read end of the worker's stdout/stderr
        self.ctrl_fd = ctrl_fd  # write end of its cancel pipe
        self.functions = set()  # function ids it has been sent
        self.connected = False
        self.log_file = None
        self.log_bytes = 0  # written to log_file
        self.partial = b""
        self.output_task = None  # (task id, name) whose output the worker said follows
        self.exit_code = None
        self.actor_id = None  # set for an actor's dedicated process
        self.log_eof = False  # its output pipe is closed (the process is gone)
        self.reclaiming = False  # asked to hand back its queued tasks (ReturnTasks pending)


class WorkerTable:
    def __init__(self, log_dir, log_max_bytes=64 << 20):
        self.log_dir = log_dir
        self.log_max_bytes = log_max_bytes
        self.by_id = {}
        self.by_pid = {}
        self.by_log_fd = {}

    def create(self):
        """Make a worker record and its pipes; returns (record, fds to hand the child)."""
        log_r, log_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(log_r, False)
        ctrl_r, ctrl_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(ctrl_r, False)
        os.set_blocking(ctrl_w, False)
        w = WorkerProc(random_id(), log_r, ctrl_w)
        self.by_id[w.worker_id] = w
        self.by_log_fd[log_r] = w
        return w, log_w, ctrl_r

    def started(self, worker_id, pid):
        w = self.by_id.get(worker_id)
        if w is not None and w.pid is None:
            w.pid = pid
            self.by_pid[pid] = w
            w.log_file = _session.open_private(self._log_path(pid), "ab", buffering=0)
        return w

    def _log_path(self, pid):
        return os.path.join(self.log_dir, f"worker-{pid}.log")

    def remove(self, w):
        self.by_id.pop(w.worker_id, None)
        if w.pid is not None:
            self.by_pid.pop(w.pid, None)
        self.by_log_fd.pop(w.log_fd, None)
        for fd in (w.log_fd, w.ctrl_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        if w.log_file is not None:
            w.log_file.close()

    def read_log(self, w):
        """Complete lines the worker printed since the last call ([] if none)."""
        chunks = []
        while True:
            try:
                data = os.read(w.log_fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not data:
                w.log_eof = True
                break
            chunks.append(data)
        if not chunks:
            return []
        data = w.partial + b"".join(chunks)
        head, sep, tail = data.rpartition(b"\n")
        w.partial = _last_redraw(tail)
        if not sep:
            return []
        if w.log_file is not None:
            self._keep(w, (head.replace(TASK_MARK, b"--- output of task ") if TASK_MARK in head else head) + b"\n")
        return head.decode("utf-8", "replace").split("\n")

    def _keep(self, w, data):
        """Append a worker's output to its log file; past the bound, start a new file (the
        old one stays as ``.1``, replacing an older ``.1``)."""
        try:
            if w.log_bytes + len(data) > self.log_max_bytes and w.log_bytes:
                w.log_file.close()
                path = self._log_path(w.pid)
                os.replace(path, path + ".1")
                w.log_file = _session.open_private(path, "ab", buffering=0)
                w.log_bytes = 0
            w.log_file.write(data)
            w.log_bytes += len(data)
        except (OSError, ValueError):  # a full disk must not stop the node (the driver still
            # sees the output); ValueError: the file could not be opened again after a rotation
            pass

    def signal(self, w, sig):
        if w.pid is not None:
            try:
                os.kill(w.pid, sig)
            except ProcessLookupError:
                pass

    def kill_all(self):
        for w in list(self.by_id.values()):
            self.signal(w, signal.SIGKILL)


def _last_redraw(tail):
    """An unfinished line redrawn with carriage returns (a plain tqdm bar in a task):
    only its last state, so it does not grow for as long as the bar runs."""
    cut = tail.rfind(b"\r", 0, len(tail) - 1)
    return tail[cut:] if cut > 0 else tail
