"""Unauthenticated peers against a head node, and the file modes of what nodes leave on disk.

The attacker's payload is what would run code if it ever got through: a NodeJoin and a
SpillTask whose function is a pickle that, when unpickled (by whichever process loads
the function), creates a *canary* directory. The same payload from a member holding the
token makes the canary appear (the control: it shows the check can fail). Each attack
then sends it without authenticating, and the check is that the head read no message
at all (its count of received messages does not move) and that the canary never appears.
"""
import os
import pickle
import socket
import stat
import threading
import time

import zmq

from actorscoop import protocol as P
from actorscoop.transport import _secure

from fuzz_targets import SYNC_TIMEOUT, node_status


class _Canary:
    """Unpickling this creates the directory ``path`` (and gives None)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def poisoned_frames(canary):
    """One frame: a NodeJoin and a SpillTask whose function unpickles into a canary."""
    node_id = os.urandom(16)
    blob = pickle.dumps(_Canary(canary), protocol=5)
    spec = P.SubmitTask(os.urandom(16), os.urandom(16), "canary", pickle.dumps(((), {})), None, [], [], 1,
                        {"CPU": 1.0}, 0, False, None, None, 0)
    return [P.encode([P.NodeJoin(P.PROTOCOL_VERSION, node_id, "attacker", 1, {}, "127.0.0.1:1"),
                      P.SpillTask(node_id, list(spec), [], ["canary", blob, []], 0)])]


def cluster_report(info):
    return node_status(info)["cluster"]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class _Recorder:
    """A TCP proxy for one connection that records what the client sends."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.sent = bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True, name="fuzz-recorder")
        self.thread.start()

    def _run(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(self.upstream)
        self.listener.close()

        def pump(src, dst, record):
            try:
                while data := src.recv(65536):
                    if record:
                        self.sent += data
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        back = threading.Thread(target=pump, args=(server, client, False), daemon=True)
        back.start()
        pump(client, server, True)
        back.join(10)
        client.close()
        server.close()


class Attacks:
    """Attacks on the head at ``info`` (a single-node cluster: nothing else sends to its
    socket) whose token is ``creds``."""

    def __init__(self, info, creds, workdir):
        self.info, self.creds = info, creds
        host, port = info["cluster"].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.address = f"tcp://{info['cluster']}"
        self.canary = os.path.join(workdir, "canary")
        self.ctx = zmq.Context()
        self.replay = None
        self.control_took = None
        self.results = []  # (attack, outcome)

    def close(self):
        self.ctx.term()

    # -------------------------------------------------------------- the control
    def control(self):
        """The payload from a member with the token, through a recording proxy: the canary
        appears (the check can fail). Returns the seconds it took."""
        recorder = _Recorder((self.host, self.port))
        sock = _secure.client_socket(self.ctx, zmq.DEALER, self.creds, f"tcp://127.0.0.1:{recorder.port}")
        start = time.monotonic()
        try:
            for frame in poisoned_frames(self.canary):
                sock.send(frame)
            wait_until(lambda: os.path.isdir(self.canary), SYNC_TIMEOUT, "the control's canary")
        finally:
            sock.close(linger=0)
        took = self.control_took = time.monotonic() - start
        recorder.thread.join(10)
        self.replay = bytes(recorder.sent)
        os.rmdir(self.canary)
        self.results.append(("control: a member with the token", f"canary unpickled after {took:.2f} s"))
        return took

    # -------------------------------------------------------------- the attacks
    def _zmq(self, configure):
        """Send the payload from a DEALER set up by ``configure``; return once the head has
        refused the connection (its Authenticator counted it)."""
        before = sum(cluster_report(self.info)["refused"].values())
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        configure(sock)
        sock.connect(self.address)
        try:
            for frame in poisoned_frames(self.canary):
                sock.send(frame)
            wait_until(lambda: sum(cluster_report(self.info)["refused"].values()) > before, SYNC_TIMEOUT,
                       "the head to refuse the connection")
            if sock.poll(200):
                return "ANSWERED"
        finally:
            sock.close(linger=0)
        return "refused at the handshake"

    def _raw(self, data):
        """Send raw bytes on a TCP connection; return once the head has closed it."""
        s = socket.create_connection((self.host, self.port), timeout=SYNC_TIMEOUT)
        got = b""
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):  # the head's greeting (and WELCOME), then end of stream
                got += chunk
        except OSError as exc:
            return f"connection reset ({exc.strerror})"
        finally:
            s.close()
        return f"closed by the head after {len(got)} bytes of handshake"

    def run_all(self):
        """Every attack; returns [(attack, outcome)] and raises if any got through."""
        received = cluster_report(self.info)["received"]
        other = _secure.new_credentials()
        own = _secure.new_credentials()

        def wrong_key(sock):
            sock.curve_serverkey = other.public
            sock.curve_publickey = other.public
            sock.curve_secretkey = other.secret

        def public_key_only(sock):
            sock.curve_serverkey = self.creds.public
            sock.curve_publickey = own.public
            sock.curve_secretkey = own.secret

        attacks = [
            ("no key: a plaintext ZeroMQ client", lambda: self._zmq(lambda sock: None)),
            ("wrong key: another cluster's token", lambda: self._zmq(wrong_key)),
            ("the cluster's public key, another keypair", lambda: self._zmq(public_key_only)),
            ("plaintext bytes, no ZeroMQ", lambda: self._raw(b"".join(poisoned_frames(self.canary)))),
            ("replay of a member's whole session (handshake and messages)", lambda: self._raw(self.replay)),
        ]
        for name, attack in attacks:
            self.results.append((name, attack()))
        # Nothing to wait for: watch for the canary for twice as long as the control took
        # to make it (at least 3 s), then look at how many messages the head read.
        watch_end = time.monotonic() + max(3.0, 2 * self.control_took)
        while time.monotonic() < watch_end and not os.path.isdir(self.canary):
            time.sleep(0.05)
        after = cluster_report(self.info)["received"]
        return {"results": self.results, "received_during_attacks": after - received,
                "canary": os.path.isdir(self.canary), "refused": cluster_report(self.info)["refused"]}


# ------------------------------------------------------------------ file modes

def private_modes(paths):
    """Walk ``paths`` (files or directories, symlinks followed once) and return
    ``(checked, [(path, mode)])``: the entries any other user could read, write or enter."""
    checked, open_ = 0, []
    seen = set()
    for root in paths:
        root = os.path.realpath(root)
        if root in seen or not os.path.exists(root):
            continue
        seen.add(root)
        entries = [root]
        if os.path.isdir(root):
            for dirpath, dirnames, filenames in os.walk(root):
                entries += [os.path.join(dirpath, n) for n in dirnames + filenames]
        for path in entries:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue  # a symlink's own mode means nothing; its target is walked
            checked += 1
            if st.st_mode & 0o077:
                open_.append((path, oct(st.st_mode & 0o777)))
    return checked, open_


def node_paths(info):
    """What a node keeps on disk: its session (logs, spill, sockets), the registry of
    nodes, and its store's shared-memory arena."""
    from actorscoop._common import _session
    session = info["session_dir"]
    status = node_status(info)
    store_pid = status.get("store", {}).get("store_pid")
    arenas = [os.path.join("/dev/shm", n) for n in os.listdir("/dev/shm")
              if store_pid and n.startswith(f"actorscoop-plasma-{store_pid}-")]
    return [session, os.path.join(session, "sockets"), _session.nodes_dir(), *arenas]
