"""The fork server: a process that imported the runtime once and forks workers on request.

A new worker costs a fork (milliseconds), not an interpreter start. The raylet talks to
it over a SOCK_SEQPACKET socketpair: it sends a JSON command with the worker's log pipe
attached (SCM_RIGHTS); the zygote answers ``{"started": pid}`` and, when a child exits,
``{"exited": pid, "code": exitcode}`` (it is the parent, so it reaps and knows why).
"""
import json
import os
import select
import signal
import socket
import subprocess
import sys

_MAX = 65536


class ZygoteHandle:
    """Raylet side: start the zygote (or take one its driver started beside the raylet:
    ``sock``, ``pid``), ask for workers, read its reports."""

    def __init__(self, env=None, sock=None, pid=None):
        if sock is None:
            from ..._common._launcher import spawn_zygote
            self.proc, sock = spawn_zygote(env)
            pid = self.proc.pid
        else:
            self.proc = None  # not our child: its driver reaps it
        self.pid = pid
        self.sock = sock
        self.sock.setblocking(False)

    def fileno(self):
        return self.sock.fileno()

    def fork_worker(self, command: dict, log_fd: int, ctrl_fd: int):
        """Ask for a worker whose stdout/stderr go to ``log_fd`` and who reads cancel
        requests from ``ctrl_fd``; the answer comes later through read_reports()."""
        socket.send_fds(self.sock, [json.dumps(command).encode()], [log_fd, ctrl_fd])

    def read_reports(self):
        """All reports available now, as dicts; [] if none; None if the zygote is gone."""
        out = []
        while True:
            try:
                data = self.sock.recv(_MAX)
            except BlockingIOError:
                return out
            except OSError:
                return None
            if not data:
                return None if not out else out
            out.append(json.loads(data))

    def stop(self, timeout=5):
        self.begin_stop()
        if self.proc is None:
            _wait_gone(self.pid, timeout)
        elif self.proc.poll() is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def begin_stop(self):
        """Ask the zygote to go (it kills its workers and exits); ``stop`` waits for it."""
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            if self.proc is None:
                os.kill(self.pid, signal.SIGTERM)
            elif self.proc.poll() is None:
                self.proc.terminate()
        except ProcessLookupError:
            pass


def _wait_gone(pid, timeout):
    """Wait up to ``timeout`` s for process ``pid`` (not our child) to exit (a zombie
    waiting for its parent to reap it counts as gone)."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def _preimport_essential():
    import cloudpickle  # noqa: F401
    import msgpack  # noqa: F401

    from . import _main as _worker_main  # noqa: F401


# What most workers need (their store client), imported once here rather than in each
# worker; then what Arrow values need (~0.1 s of CPU), only once nobody has asked for a
# worker for a while: not while the node and its first tasks start.
_HEAVY = ("numpy", "zmq", "actorscoop.plasma._client")
_LATER = ("pyarrow", "actorscoop.plasma._arrow")
LATER_AFTER = 1.0  # s without a request for a worker


def _preimport_heavy(sock, names):
    """Import ``names`` (a list, emptied as it goes), one module at a time, but not while a
    request for a worker waits: the first workers start at once, later ones start warm."""
    import importlib
    while names:
        if select.select([sock], [], [], 0)[0]:
            return
        name = names.pop(0)
        try:
            importlib.import_module(name)
        except ImportError:
            pass


_HEAVY_LEFT = list(_HEAVY)
_LATER_LEFT = list(_LATER)


def main(fd, beside=False):
    if not beside:  # the raylet's child: die with it (else: when its socket closes)
        from .._proc import die_with_parent
        die_with_parent(signal.SIGKILL)
    sock = socket.socket(fileno=fd)
    _preimport_essential()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: _leave(children))
    children = set()
    while True:
        _preimport_heavy(sock, _HEAVY_LEFT)
        try:
            readable, _, _ = select.select([sock, wake_r], [], [], LATER_AFTER if _LATER_LEFT else None)
        except InterruptedError:
            continue
        if not readable:
            _preimport_heavy(sock, _LATER_LEFT)
            continue
        if wake_r in readable:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            _reap(sock, children)
        if sock in readable:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(sock, _MAX, 4)
            except OSError:
                msg = b""
            if not msg:  # the raylet is gone
                for pid in children:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return
            command = json.loads(msg)
            pid = os.fork()
            if pid == 0:
                _child(command, fds, sock, wake_r, wake_w)
            for f in fds:
                os.close(f)
            children.add(pid)
            sock.send(json.dumps({"started": pid, "worker_id": command["worker_id"]}).encode())


def _leave(children):
    """SIGTERM (the raylet stops): kill the workers, leave without the interpreter's
    teardown (nothing here needs it; a node's shutdown waits for us)."""
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os._exit(0)


def _reap(sock, children):
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        try:
            sock.send(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}).encode())
        except OSError:
            return


def _child(command, fds, sock, wake_r, wake_w):
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sock.close()
        os.close(wake_r)
        os.close(wake_w)
        from .._proc import die_with_parent
        die_with_parent(signal.SIGKILL)
        log_fd, command["ctrl_fd"] = fds[0], fds[1]
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        from . import _main as _worker_main
        code = _worker_main.main(command)
    except BaseException:  # report anything, then leave without running parent cleanup
        import traceback
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)


if __name__ == "__main__":
    main(int(sys.argv[1]), beside="--beside" in sys.argv[2:])
