"""More live sockets for the fuzzer (see fuzz_targets.py): where one process of a node trusts
another of the same user, or a member trusts its head.

* a driver's result socket (``d-*.sock``): workers send the results of its tasks there;
* an actor's direct-call socket (``a-*.sock``): drivers call the actor's process there;
* a member node's link to its head: a fake head holding the cluster's keys (so past CURVE);
* a worker's and a driver's link to its raylet: this fuzzer stands in for the raylet.

Each session is synchronized as in fuzz_targets.py: after its frames comes a request that
is answered only after everything before it was handled.
"""
import json
import os
import pickle
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import psutil
import zmq

from actorscoop._common import _session
from actorscoop import protocol as P
from actorscoop._common._ids import object_id, new_task_id
from actorscoop._common._launcher import launch_node
from actorscoop._common._session import actor_socket as socket_path
from actorscoop.transport import Connection, ConnectionClosed, Listener, _secure
from fuzz_targets import SYNC_TIMEOUT, Counter, Stuck, _quiet, memory

HERE = os.path.dirname(os.path.abspath(__file__))
_NO_ARGS = pickle.dumps(((), None), protocol=5)  # what a driver sends for a call without arguments


def _ending(conn, ending):
    """How a session on a Unix socket ends: "close", "oversized" (an absurd length prefix),
    "cut" (a frame cut by a hang-up) or "empty" (an empty frame)."""
    if ending == "oversized":
        conn.sock.sendall((0xFFFFFFFF).to_bytes(4, "little") + b"x" * 64)
    elif ending == "cut":
        conn.sock.sendall((4096).to_bytes(4, "little") + b"x" * 100)
    elif ending == "empty":
        conn.send(b"")


def _unix_session(target, path, frames, sync, ending):
    """One session on a Unix socket: ``frames``, then ``sync(conn)`` (a request answered
    after them), then the ending. If the process closed the connection, the sync goes on a
    new one: the process must still serve."""
    c = Connection(path, SYNC_TIMEOUT)
    try:
        for f in frames:
            c.send(f)
            target.count.frames += 1
        sync(c)
        _ending(c, ending)
    except (ConnectionClosed, OSError):
        target.count.dropped_connections += 1
        c.close()
        c = Connection(path, SYNC_TIMEOUT)
        sync(c)
    finally:
        c.close()


# ------------------------------------------------------------------ a driver's result socket

def _start_driver(args, log):
    """Start tests/fuzz_driver_proc.py: commands on its stdin, answers on a pipe of their
    own (its stdout, like its stderr, goes to ``log``: remote output, progress bars)."""
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fuzz_driver_proc.py"), *args],
                                stdin=subprocess.PIPE, stdout=log, stderr=log, text=True, bufsize=1,
                                pass_fds=[w], env={**os.environ, "FUZZ_ANSWERS_FD": str(w)})
    finally:
        os.close(w)
    proc.answers = os.fdopen(r)
    return proc


def _ask(proc, command):
    """One command to a fuzz driver; its answer (a JSON line)."""
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    line = proc.answers.readline()
    if not line:
        raise Stuck(f"the fuzz driver (pid {proc.pid}) exited: {proc.wait(10)}")
    return json.loads(line)


def _wait(proc, oid):
    answer = _ask(proc, f"wait {oid.hex()}")
    if not answer["ok"]:
        raise Stuck(f"the driver (pid {proc.pid}) did not take a value within {SYNC_TIMEOUT} s "
                    f"(pump thread alive: {answer['pump']})")


class DriverTarget:
    """Sessions on the result socket of a driver of its own (tests/fuzz_driver_proc.py,
    connected to the node serving ``address``). Synchronized on an ObjectValue the driver waits for, sent
    after the session's frames on the same connection."""

    name = "driver (result socket)"

    def __init__(self, address, log_path):
        self.log_path = log_path
        self._log = _session.open_private(log_path)
        self.proc = _start_driver([address], self._log)
        self.count = Counter()
        hello = self.ask("info")
        self.pid, self.path = hello["pid"], hello["return_socket"]
        self.value = P.ObjectValue(b"", P.VALUE_INLINE, pickle.dumps(None, protocol=5))

    def ask(self, command):
        return _ask(self.proc, command)

    def session(self, frames, ending):
        """``frames``, then the value the driver waits for (answered before the session
        ends: a bad ending drops the connection, and what was read in the same batch)."""
        self.count.sessions += 1
        oid = object_id(new_task_id(), 1)
        self.ask(f"expect {oid.hex()}")

        def sync(conn):
            conn.send(P.encode([self.value._replace(object_id=oid)]))
            self.wait(oid)
        _unix_session(self, self.path, frames, sync, ending)

    def wait(self, oid):
        _wait(self.proc, oid)

    def tables(self):
        t = self.ask("tables")
        rss, uss = memory(self.pid)
        return {**t, "driver_rss": rss, "driver_uss": uss}

    def fresh_work(self):
        return self.ask("work")["checked"]

    def alive(self):
        return self.proc.poll() is None and self.ask("tables")["pump"]

    def close(self):
        try:
            self.ask("quit")
        finally:
            self.proc.wait(30)
            self.proc.answers.close()
            self._log.close()


# ------------------------------------------------------------------ an actor's direct-call socket

class ActorTarget:
    """Sessions on an actor's direct-call socket, as a caller of the same user. Each ends
    with a call to ``ping`` on the same connection, whose CallDone comes after the
    session's calls ran (an actor runs one caller's calls in order)."""

    name = "actor (direct-call socket)"

    def __init__(self, sockets_dir, actor_id, pid):
        self.actor_id = actor_id
        self.pid = pid
        self.path = socket_path(sockets_dir, actor_id)
        self.count = Counter()
        self.caller = os.urandom(16)

    def ping(self):
        tid = new_task_id()
        return tid, P.encode([P.ExecuteTask(tid, b"\0" * 16, "ping", None, None, _NO_ARGS, None, [], 1, False,
                                            self.caller, 0, self.actor_id, "ping", 0, None, False)])

    def session(self, hello, frames, ending):
        self.count.sessions += 1
        if hello is not None:
            frames = [msgpack.packb([hello], use_bin_type=True), *frames]
        _unix_session(self, self.path, frames, self.sync, ending)

    def sync(self, conn):
        """A call to ``ping`` (after a DirectHello: the connection may have had none) and its answer."""
        tid, frame = self.ping()
        conn.send(P.encode([P.DirectHello(self.caller)]))
        conn.send(frame)
        deadline = time.monotonic() + SYNC_TIMEOUT
        while time.monotonic() < deadline:
            got = conn.recv(max(0.0, deadline - time.monotonic()))
            if got is None:
                break
            if any(type(r) is P.CallDone and r.task_id == tid for r in P.decode_or_log(got, _quiet, "actor")):
                return
        raise Stuck(f"the actor (pid {self.pid}) did not answer a call within {SYNC_TIMEOUT} s")

    def alive(self):
        return psutil.pid_exists(self.pid)

    def close(self):
        pass


# ------------------------------------------------------------------ a member, from a malicious head

class FakeHead:
    """A head that holds the cluster's keys (its handshake succeeds) and a member node
    that joins it. It answers the member's NodeJoin, the KVGets the member forwards and its
    status requests (a silent head is counted lost after 10 s, and a slow run then tested the
    member's rejoining instead); anything else the member sends it reads and ignores."""

    name = "member node (TCP, CURVE, from a malicious head)"

    def __init__(self, output=None, num_cpus=1):
        self.creds = _secure.new_credentials()
        self.ctx = zmq.Context()
        self.auth = _secure.Authenticator(self.ctx, self.creds).start()
        self.sock = None
        self.node = None
        self.count = Counter()
        self.node_id = os.urandom(16)
        self.member = None  # the member's routing identity, once it joined
        self._rid = 1 << 40
        try:
            self.sock, port = _secure.server_socket(self.ctx, zmq.ROUTER, self.creds)
            self.address = f"127.0.0.1:{port}"
            started = []
            launcher = threading.Thread(target=lambda: started.append(launch_node(
                _session.new_session_dir(), num_cpus, None, 64 << 20, head=False, embedded=True,
                cluster={"token": self.creds.token, "join": self.address}, output=output)), daemon=True)
            launcher.start()
            deadline = time.monotonic() + 60
            while launcher.is_alive() and time.monotonic() < deadline:
                self._serve(0.05)
            launcher.join(1)
            if not started:
                raise RuntimeError(f"the member node did not start (joining {self.address})")
            self.node = started[0]
        except BaseException:
            self.close()
            raise
        self.info = self.node[1]
        self.pid = self.info["pid"]
        self.probe = Connection(self.info["raylet_socket"], SYNC_TIMEOUT)
        self.probe.send(P.encode([P.Hello(P.PROTOCOL_VERSION, P.KIND_CLI, os.getpid(), os.urandom(16), "fuzz probe")]))

    def _serve(self, timeout):
        """Read what the member sent (up to ``timeout`` s for the first message); answer
        NodeJoin and KVGet."""
        while self.sock.poll(int(timeout * 1000)):
            timeout = 0
            ident, *frames = self.sock.recv_multipart()
            for frame in frames:
                for rec in P.decode_or_log(frame, _quiet, "the member"):
                    if type(rec) is P.NodeJoin:
                        self.member = ident
                        self.reply(P.JoinReply(True, "", self.node_id))
                    elif type(rec) is P.KVGet:
                        self.reply(P.KVReply(rec.request_id, False, None, ""))
                    elif type(rec) is P.ClusterStatusRequest:  # as a head does: the member
                        self.reply(P.ClusterStatusReply(rec.request_id, []))  # hears from it

    def reply(self, rec):
        self.sock.send_multipart([self.member, P.encode([rec])])

    def session(self, messages):
        """``messages``: lists of frames, each list one ZeroMQ message to the member."""
        self.count.sessions += 1
        for frames in messages:
            self.sock.send_multipart([self.member, *frames])
            self.count.frames += len(frames)
        self.sync()

    def sync(self):
        """A KVGet through the member's raylet: the member forwards it here, and forwards
        the answer back after everything sent before it (one ordered link)."""
        self._rid += 1
        rid = self._rid
        self.probe.send(P.encode([P.KVGet(rid, "fuzz-sync", False)]))
        deadline = time.monotonic() + SYNC_TIMEOUT
        while time.monotonic() < deadline:
            self._serve(0.01)
            frame = self.probe.recv(0.01)
            if frame is not None and any(type(r) is P.KVReply and r.request_id == rid for r in P.decode(frame)):
                return
        raise Stuck(f"the member (pid {self.pid}) did not answer within {SYNC_TIMEOUT} s")

    def alive(self):
        return psutil.pid_exists(self.pid)

    def close(self):
        if self.node is not None:
            self.probe.close()
            proc, info, lifeline = self.node
            os.close(lifeline)
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                self._serve(0.05)  # what it says on the way out (no answer needed)
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            self.node = None
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
            self.ctx.term()


# ------------------------------------------------------------------ a worker or a driver, from its raylet

class _FakeRaylet:
    """This fuzzer as the raylet of one process it starts (``argv``): a socket in a private
    directory of its own stands in for the raylet's. The process connects, says Hello,
    gets a Welcome (its store "could not start": a ``.error`` note beside the socket, so
    what needs the store fails at once), then the sessions' frames."""

    def __init__(self, argv, log_path, driver=False):
        self.count = Counter()
        self.dir = tempfile.mkdtemp(prefix="ascr-", dir="/tmp")
        os.chmod(self.dir, 0o700)
        self.listener = Listener(os.path.join(self.dir, "raylet.sock"))
        self.store = os.path.join(self.dir, "plasma.sock")
        with _session.open_private(self.store + ".error", "wb") as f:
            f.write(b"no store: the fuzzer stands in for the raylet")
        self._log = _session.open_private(log_path)
        if driver:  # tests/fuzz_driver_proc.py, taking commands
            self.proc = _start_driver([*argv, self.listener.path], self._log)
        else:
            self.proc = subprocess.Popen([sys.executable, *argv, self.listener.path], stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=self._log)
        self.pid = self.proc.pid
        self.peer = None
        deadline = time.monotonic() + SYNC_TIMEOUT
        while self.peer is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise Stuck(f"the {self.name} (pid {self.pid}) did not connect")
            select.select([self.listener.fd], [], [], 0.1)
            for peer in self.listener.accept():
                self.peer = peer
        self.read(lambda r: type(r) is P.Hello)
        self.write(P.encode([P.Welcome(P.PROTOCOL_VERSION, os.urandom(16), self.dir, self.store, 1.0, {})]))

    def write(self, frame):
        self.peer.write(frame)
        while not self.peer.flush():
            select.select([], [self.peer.fd], [], 1.0)

    def read(self, wanted, timeout=SYNC_TIMEOUT):
        """Read what the process sends until a record ``wanted(record)`` is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            select.select([self.peer.fd], [], [], min(0.1, timeout))
            for frame in self.peer.read_frames():
                if any(wanted(r) for r in P.decode_or_log(frame, _quiet, self.name)):
                    return True
        if timeout < SYNC_TIMEOUT:
            return False
        raise Stuck(f"the {self.name} (pid {self.pid}) did not answer within {SYNC_TIMEOUT} s")

    def session(self, frames):
        self.count.sessions += 1
        for f in frames:
            self.write(f)
            self.count.frames += 1
        self.sync()

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        if self.peer is not None:
            self.peer.close()  # the process exits when its raylet's connection closes
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.listener.close()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_WORKER = "import json, sys; from actorscoop.node.worker._main import main; " \
          "sys.exit(main({'worker_id': '%s', 'raylet_socket': sys.argv[1]}))"


class WorkerTarget(_FakeRaylet):
    """A worker whose raylet is this fuzzer. Synchronized on a task (``abs(-1)``) whose
    TaskDone comes after the session's tasks ran."""

    name = "worker (its raylet's socket)"

    def __init__(self, log_path):
        self.function = (os.urandom(16), pickle.dumps(abs, protocol=5))
        super().__init__(["-c", _WORKER % os.urandom(16).hex()], log_path)
        self.sync()

    def task(self, tid):
        fid, blob = self.function
        return P.ExecuteTask(tid, fid, "abs", blob, [], pickle.dumps(((-1,), None), protocol=5), None, [], 1,
                             False, b"fuzz", 0, None, None, 0, None, False)

    def sync(self):
        tid = os.urandom(16)
        self.write(P.encode([self.task(tid)]))
        self.read(lambda r: type(r) is P.TaskDone and r.task_id == tid)

    def tables(self):
        rss, uss = memory(self.pid)
        return {"worker_rss": rss, "worker_uss": uss, "dropped": None}  # its count is in no report


class DriverRayletTarget(_FakeRaylet):
    """A driver (tests/fuzz_driver_proc.py) whose raylet is this fuzzer: what the raylet
    sends it (values, replies, output, warnings) on its one connection. Synchronized on an
    ObjectValue the driver waits for."""

    name = "driver (its raylet's socket)"

    def __init__(self, log_path):
        super().__init__(["--raylet"], log_path, driver=True)
        self.value = P.ObjectValue(b"", P.VALUE_INLINE, pickle.dumps(None, protocol=5))
        self.sync()

    def sync(self):
        oid = object_id(new_task_id(), 1)
        _ask(self.proc, f"expect {oid.hex()}")
        self.write(P.encode([self.value._replace(object_id=oid)]))
        self.read(lambda r: False, timeout=0.01)  # what the driver sent (references): read, not kept
        _wait(self.proc, oid)

    def tables(self):
        t = _ask(self.proc, "tables")
        rss, uss = memory(self.pid)
        return {**t, "driver_rss": rss, "driver_uss": uss}

    def alive(self):
        return super().alive() and _ask(self.proc, "tables")["pump"]

    def close(self):
        if self.alive():
            _ask(self.proc, "quit")
        super().close()
        self.proc.answers.close()
