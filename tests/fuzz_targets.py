"""The live sockets the fuzzer sends bad input to, and the checks it makes afterwards.

Each target sends one *session* (a connection, maybe a handshake, some frames) and then
synchronizes: it waits until the process has read all of it (an answer that comes after
the session's frames on the same connection, or a counter in the node's status), so that
a dead or stuck process fails the example that killed it, and memory measured after a run
covers everything sent.
"""
import os
import socket
import struct
import time

import msgpack
import psutil
import zmq

from actorscoop._cli import _main as _cli
from actorscoop import protocol as P
from actorscoop.plasma import _protocol as PP
from actorscoop.transport import Connection, ConnectionClosed, _sealed, _secure

SYNC_TIMEOUT = 30.0  # s: a process that has not answered by then is stuck (a failure)


class Stuck(AssertionError):
    """A target did not answer its synchronization request in time."""


def node_status(info):
    return _cli.request(info, "status", timeout=SYNC_TIMEOUT)


def memory(pid):
    """(resident, private) bytes of a process: its RSS, and its USS (the pages only it has;
    not the store's shared arena, which a client maps and touches in the background)."""
    m = psutil.Process(pid).memory_full_info()
    return m.rss, m.uss


class Counter:
    def __init__(self):
        self.sessions = self.frames = self.records = self.dropped_connections = 0


# ------------------------------------------------------------------ the raylet's Unix socket

class RayletTarget:
    """Sessions on the raylet's Unix socket. A probe connection (a CLI client) answers a
    KVGet after each session: the raylet reads every ready connection in the same turn."""

    name = "raylet (Unix socket)"

    def __init__(self, info):
        self.info = info
        self.pid = info["pid"]
        self.path = info["raylet_socket"]
        self.count = Counter()
        self.probe = Connection(self.path, SYNC_TIMEOUT)
        self.probe.send(P.encode([P.Hello(P.PROTOCOL_VERSION, P.KIND_CLI, os.getpid(), os.urandom(16), "fuzz probe")]))
        self._rid = 1 << 40
        self.sync()

    def session(self, hello, frames, ending):
        """``hello``: a raw Hello record or None; ``frames``: bytes; ``ending``: "close",
        "oversized" (an absurd length prefix), "cut" (a frame cut by a hang-up) or "empty"."""
        self.count.sessions += 1
        c = Connection(self.path, SYNC_TIMEOUT)
        try:
            if hello is not None:
                c.send(msgpack.packb([hello], use_bin_type=True))
            for f in frames:
                c.send(f)
                self.count.frames += 1
            if ending == "oversized":
                c.sock.sendall(struct.pack("<I", 0xFFFFFFFF) + b"x" * 64)
            elif ending == "cut":
                c.sock.sendall(struct.pack("<I", 4096) + b"x" * 100)
            elif ending == "empty":
                c.send(b"")
        except (ConnectionClosed, OSError):  # closed by the raylet (a refused Hello, a Goodbye): fine
            self.count.dropped_connections += 1
        finally:
            c.close()
        self.sync()

    def sync(self):
        self._rid += 1
        rid = self._rid
        self.probe.send(P.encode([P.KVGet(rid, "fuzz-sync", False)]))
        deadline = time.monotonic() + SYNC_TIMEOUT
        while time.monotonic() < deadline:
            frame = self.probe.recv(max(0.0, deadline - time.monotonic()))
            if frame is None:
                break
            if any(type(r) is P.KVReply and r.request_id == rid for r in P.decode(frame)):
                return
        raise Stuck(f"the raylet (pid {self.pid}) did not answer within {SYNC_TIMEOUT} s")

    def close(self):
        self.probe.close()


# ------------------------------------------------------------------ the plasma store's socket

class StoreTarget:
    """Sessions on the store's Unix socket (length-prefixed frames, actorscoop.plasma._wire):
    a connection per session (a client of its own), which ends as a well-behaved client does,
    with a Connect, a Disconnect and its answer."""

    name = "plasma store (unix socket)"

    def __init__(self, socket_path, store_pid):
        self.path = socket_path
        self.pid = store_pid
        self.count = Counter()

    def session(self, frames, multipart):
        from actorscoop.plasma import _wire
        self.count.sessions += 1
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(SYNC_TIMEOUT)
        try:
            sock.connect(self.path)
            for f in frames:
                sock.sendall(_wire.frame(f))
                self.count.frames += 1
            if multipart:  # (a ZeroMQ multipart message once; now three frames in one write)
                sock.sendall(b"".join(_wire.frame(f) for f in (b"a", b"b", b"c")))
                self.count.frames += 1
            # Connect (the store may not know us) then Disconnect: its answer comes after
            # everything above was handled, and the store forgets this client.
            sock.sendall(_wire.frame(PP.encode(PP.Connect(1, os.getpid(), PP.VERSION)))
                         + _wire.frame(PP.encode(PP.Disconnect(2))))
            frames_in = _wire.Frames()
            deadline = time.monotonic() + SYNC_TIMEOUT
            while True:
                if time.monotonic() > deadline:
                    raise Stuck(f"the store (pid {self.pid}) did not answer within {SYNC_TIMEOUT} s")
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    raise Stuck(f"the store (pid {self.pid}) did not answer within {SYNC_TIMEOUT} s") from None
                if not data:
                    raise Stuck(f"the store (pid {self.pid}) closed the connection of a session")
                frames_in.buf += data
                while (frame := frames_in.take()) is not None:
                    try:
                        reply = PP.decode(frame)
                    except Exception:
                        continue
                    if getattr(reply, "rid", None) == 2 and isinstance(reply, (PP.Answer, PP.Error)):
                        return
        finally:
            sock.close()

    def raw_session(self, data):
        """Bytes straight to the socket, not cut into frames."""
        self.count.sessions += 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.path)
            s.sendall(data)
            self.count.frames += 1
        except OSError:
            self.count.dropped_connections += 1
        finally:
            s.close()

    def close(self):
        pass


# ------------------------------------------------------------------ the head's TCP socket

class HeadTarget:
    """Sessions on the head's CURVE socket as an *authenticated* member (the right token),
    each on a connection of its own that ends with a NodeJoin and a ClusterStatusRequest,
    whose answer comes after everything before it was handled."""

    name = "head (TCP, CURVE, authenticated)"
    FUZZ_NODES = [b"\xfe" * 15 + bytes([i]) for i in range(4)]

    def __init__(self, info, creds):
        self.info = info
        self.pid = info["pid"]
        self.address = f"tcp://{info['cluster']}"
        self.creds = creds
        self.count = Counter()
        self.ctx = zmq.Context()
        self._rid = 1 << 40

    def session(self, frames, node, join_first):
        """``frames`` on a new connection of fuzz node ``node``, which (``join_first``)
        first joins, or does not (records before NodeJoin)."""
        self.count.sessions += 1
        sock = _secure.client_socket(self.ctx, zmq.DEALER, self.creds, self.address)
        node_id = self.FUZZ_NODES[node % len(self.FUZZ_NODES)]
        join = P.NodeJoin(P.PROTOCOL_VERSION, node_id, "fuzz", 1, {}, "127.0.0.1:1")
        try:
            if join_first:
                sock.send(P.encode([join]))
            for f in frames:
                sock.send(f)
                self.count.frames += 1
            self._rid += 1
            rid = self._rid
            sock.send(P.encode([join, P.ClusterStatusRequest(rid)]))
            deadline = time.monotonic() + SYNC_TIMEOUT
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sock.poll(int(left * 1000) + 1):
                    raise Stuck(f"the head (pid {self.pid}) did not answer within {SYNC_TIMEOUT} s")
                recs = P.decode_or_log(sock.recv(), _quiet, "head")
                if any(type(r) is P.ClusterStatusReply and r.request_id == rid for r in recs):
                    return
        finally:
            sock.close(linger=0)

    def close(self):
        self.ctx.term()


class _Quiet:
    def warning(self, *args):
        pass


_quiet = _Quiet()


# ------------------------------------------------------------------ a node's transfer socket

class TransferTarget:
    """Messages to a node's object-transfer socket: sealed with the cluster's key (then
    malformed inside), or not (garbage, another key). Synchronized on the node's counts
    of served and refused messages."""

    name = "object transfer (TCP, AES-GCM)"

    def __init__(self, info, creds):
        self.info = info
        self.pid = info["pid"]
        self.sealer = _sealed.Sealer(creds)
        self.stranger = _sealed.Sealer(_secure.new_credentials())
        self.count = Counter()
        self.ctx = zmq.Context()
        self.sock = None
        self.address = self.report()["address"]
        self._connect()

    def _connect(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.setsockopt(zmq.MAXMSGSIZE, -1)
        self.sock.connect(f"tcp://{self.address}")

    def report(self):
        return node_status(self.info)["cluster"]["transfer"]

    def send(self, parts, how):
        """Send one message of plaintext frames ``parts``, each sealed with the cluster's key
        (``how`` "sealed"), or altered after (one bit "flipped", "cut" short), or sealed
        with another cluster's key ("stranger"), or not at all ("plain")."""
        def seal(p):
            if how == "plain":
                return p
            sealed = (self.stranger if how == "stranger" else self.sealer).seal(p)
            if how == "flipped":
                sealed = sealed[:-1] + bytes([sealed[-1] ^ 1])
            elif how == "cut":
                sealed = sealed[:len(sealed) // 2]
            return sealed
        frames = [seal(p) for p in parts] or [b""]
        self.sock.send_multipart(frames)
        self.count.frames += 1

    def drain_replies(self):
        """Read (and discard) what the node sent back; True if it answered at all."""
        got = False
        while self.sock.poll(0):
            self.sock.recv_multipart()
            got = True
        return got

    def sync(self):
        """Wait until the node has read everything: a sealed request for an object it does
        not have gets an answer, after every message before it."""
        oid = os.urandom(20)
        self.sock.send(self.sealer.seal(P.encode([P.PullRequest(oid, 0, 1)])))
        deadline = time.monotonic() + SYNC_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                raise Stuck(f"the node (pid {self.pid}) did not answer on its transfer socket within {SYNC_TIMEOUT} s")
            parts = self.sock.recv_multipart()
            try:
                recs = P.decode(self.sealer.open(parts[0]))
            except Exception:
                continue
            if any(type(r) is P.PullChunk and r.object_id == oid for r in recs):
                return

    def close(self):
        self.sock.close(linger=0)
        self.ctx.term()
