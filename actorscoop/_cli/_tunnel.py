"""``python -m actorscoop --tunnel``: nodes on other hosts reach the head through ssh
port forwarding, for hosts that cannot open a connection back to this machine (SCOOP's
``--tunnel``).

For each such host one ssh stays open for as long as its node runs: ``ssh -o
ExitOnForwardFailure=yes -R R:HEAD:PORT HOST 'python -m actorscoop start --address
127.0.0.1:R --block ...'``. On the host, 127.0.0.1:R leads through that ssh to the head's
port here; the node joins it there. The node's ``start --block`` keeps the ssh (and so
the forward) open; stopping the node (``actorscoop down`` / the end of the launch) ends
it. Object transfers from a node to another still connect directly (large task results
and arguments): a tunnel carries the control link, not those.
"""
import os
import queue
import shlex
import signal
import socket
import subprocess
import threading
import time

from ._hosts import node_info, shell_command


def free_port() -> int:
    """A port free here, used as the forward's port on the host (a host's free ports are
    usually the same; if it is taken there, ssh fails the forward and the host fails)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TunneledNode:
    """A node started on ``host`` through an ssh carrying a remote port forward."""

    def __init__(self, ssh, host, head_target, timeout):
        self.ssh, self.host, self.head_target, self.timeout = list(ssh), host, head_target, timeout
        self.remote_port = free_port()
        self.address = f"127.0.0.1:{self.remote_port}"  # where the node joins, on its host
        self.cmd = None
        self.proc = None
        self._lines = queue.Queue()
        self._stderr = []

    def start(self, argv, env, token):
        """Run ``argv`` (a ``start --address`` :attr:`address` ``--block --json`` command)
        on the host with ``env``, the forward open, ``token`` on its stdin; return ``(True,
        node info)`` once the node printed its JSON line, or ``(False, what went wrong)``."""
        self.cmd = [*self.ssh, "-o", "ExitOnForwardFailure=yes",
                    "-R", f"{self.remote_port}:{self.head_target}", self.host,
                    shell_command(argv, env)]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        threading.Thread(target=self._drain, args=(self.proc.stdout, self._lines),
                         daemon=True, name=f"tunnel-{self.host}-out").start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, None),
                         daemon=True, name=f"tunnel-{self.host}-err").start()
        try:
            self.proc.stdin.write(token + "\n")
            self.proc.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                return False, (f"`{shlex.join(self.cmd[:-1])} ...` printed no node info within "
                               f"{self.timeout:g} s{self._tail()}")
            if line is None:  # ssh ended
                self.proc.wait()
                return False, (f"ssh to {self.host!r} with the forward {self.remote_port} -> "
                               f"here ended with code {self.proc.returncode} before the node "
                               f"started{self._tail()}")
            info = node_info(line.strip())
            if info is not None:
                return True, info

    def _drain(self, stream, sink):
        for line in stream:
            if sink is not None:
                sink.put(line)
            else:
                self._stderr.append(line)
                del self._stderr[:-20]
        if sink is not None:
            sink.put(None)

    def _tail(self):
        text = "".join(self._stderr).strip()
        return f"\nIts last output on stderr:\n{text}" if text else ""

    def close(self, timeout=30.0):
        """Wait for the ssh to end (its node stopped), killing it after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
