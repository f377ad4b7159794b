"""Cluster credentials and CURVE-secured ZeroMQ sockets: the transport between nodes.

A cluster has one CURVE keypair. Its join token, ``"asc1."`` + the Z85 secret key, is
all a node needs to join: the public key is derived from it. Who is refused, and where:

- a plaintext client, or one whose token is another cluster's (so it encrypts to the
  wrong server key), fails the handshake inside ZeroMQ; the :class:`Authenticator`
  learns of it from a socket monitor, which does not tell the peer's address;
- a client that knows the server's public key but holds another keypair completes the
  CURVE handshake: ZeroMQ would let it in without a ZAP handler. The Authenticator (the
  context's ZAP handler) refuses it, so :func:`server_socket` binds only while one
  runs, and sets ZAP_ENFORCE_DOMAIN: once it stops, clients are refused, not let in.

Credentials are stored in ``$ACTORSCOOP_HOME/credentials/<name>.json`` (default
``~/.actorscoop``): directory 0700, file 0600. See docs/security.md.
"""
import collections
import dataclasses
import errno
import hashlib
import itertools
import json
import logging
import os
import re
import stat
import threading
import time

import zmq
from zmq.utils import z85

from ..exceptions import ActorScoopError
from ._token import TOKEN_PREFIX, secret_of

log = logging.getLogger("actorscoop.transport")

ZAP_DOMAIN = b"actorscoop"
HANDSHAKE_MS = 5000  # a peer that has not finished its handshake by then is dropped
_ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the ZAP specification (RFC 27)
_MONITOR_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                   | zmq.EVENT_MONITOR_STOPPED)
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}\Z")
_running = {}  # zmq.Context -> its started Authenticator (a context has one ZAP handler)
_running_lock = threading.Lock()
_monitor_ids = itertools.count()


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A cluster's CURVE keypair, each key 40 bytes of Z85. The secret stays out of repr()."""

    public: bytes
    secret: bytes = dataclasses.field(repr=False)

    @property
    def token(self) -> str:
        """The join token: whoever holds it can join the cluster. Keep it secret."""
        return TOKEN_PREFIX + self.secret.decode("ascii")

    @property
    def fingerprint(self) -> str:
        """12 hex digits of sha256(public key): safe to show, to compare between nodes."""
        return hashlib.sha256(self.public).hexdigest()[:12]

    @classmethod
    def from_token(cls, token: str) -> "Credentials":
        """Credentials from a join token. Raises ValueError saying what is wrong with it."""
        secret = secret_of(token)
        return cls(zmq.curve_public(secret), secret)


def new_credentials() -> Credentials:
    """A new cluster keypair."""
    public, secret = zmq.curve_keypair()
    return Credentials(public, secret)


# -- storage ---------------------------------------------------------------------------

def credentials_dir(create: bool = False) -> str:
    """``$ACTORSCOOP_HOME/credentials`` (default ``~/.actorscoop/credentials``)."""
    home = os.environ.get("ACTORSCOOP_HOME") or os.path.join(os.path.expanduser("~"), ".actorscoop")
    path = os.path.join(home, "credentials")
    if create:
        os.makedirs(home, mode=0o700, exist_ok=True)
        os.makedirs(path, mode=0o700, exist_ok=True)
    if os.path.lexists(path):
        _check_private(os.lstat(path), path, stat.S_ISDIR, "chmod 700")
    return path


def _check_private(st, path, is_kind, fix):
    """Refuse a file or directory another user owns, or that others may read."""
    if not is_kind(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ActorScoopError(
            f"{path} is not private to this user (owner uid {st.st_uid}, mode "
            f"{oct(st.st_mode & 0o777)}; expected uid {os.getuid()} and no group/other "
            f"access): actorscoop will not use it. If it is yours, run `{fix} {path}`; "
            "otherwise delete it and create new credentials (`actorscoop start --head`).")


def _path(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"credentials name {name!r}: use letters, digits, '_', '-', '.' "
                         "(at most 64, not starting with '.')")
    return os.path.join(credentials_dir(create=False), f"{name}.json")


def save(creds: Credentials, name: str = "default") -> str:
    """Write ``creds`` to ``<credentials_dir>/<name>.json`` (mode 0600, atomically,
    replacing a file of that name). Returns the path."""
    path = _path(name)
    credentials_dir(create=True)
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 1, "public": creds.public.decode(),
                       "secret": creds.secret.decode(), "created": time.time()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def load(name: str = "default"):
    """The credentials saved as ``name``, or None if there are none.

    Raises ActorScoopError if the file is another user's, readable by others, a
    symlink, or not a credentials file.
    """
    path = _path(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise ActorScoopError(f"{path} is a symlink: actorscoop reads credentials only "
                              "from a regular file. Delete it and save them again.") from None
    with os.fdopen(fd, "rb") as f:
        _check_private(os.fstat(fd), path, stat.S_ISREG, "chmod 600")
        text = f.read(1 << 16)
    try:
        data = json.loads(text)
        creds = Credentials(zmq.curve_public(secret_of(TOKEN_PREFIX + data["secret"])),
                            data["secret"].encode("ascii"))
        if creds.public.decode() != data["public"]:
            raise ValueError("the public key does not match the secret key")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ActorScoopError(f"{path} is not a valid credentials file ({exc!r}). Delete "
                              "it, and save the credentials again from the join token.") from None
    return creds


def load_any() -> list:
    """All stored credentials, by name. Raises like :func:`load` for a file it refuses."""
    d = credentials_dir(create=False)
    if not os.path.isdir(d):
        return []
    names = sorted(n[:-5] for n in os.listdir(d) if n.endswith(".json") and _NAME.match(n[:-5]))
    return [c for c in map(load, names) if c is not None]


# -- sockets ---------------------------------------------------------------------------

def _common_options(sock, handshake_ms):
    sock.linger = 0
    sock.setsockopt(zmq.HANDSHAKE_IVL, handshake_ms)


def server_socket(ctx, socket_type, creds, host="127.0.0.1", port=0, handshake_ms=HANDSHAKE_MS):
    """Bind a CURVE server socket on ``tcp://host:port``; returns ``(socket, port)``.

    ``port=0`` picks a free port. Raises ActorScoopError if no :class:`Authenticator`
    for ``creds`` runs on ``ctx``: start one first (``with Authenticator(ctx, creds):``).
    """
    auth = _running.get(ctx)
    if auth is None or auth.creds.public != creds.public:
        raise ActorScoopError(
            f"no Authenticator for cluster {creds.fingerprint} runs on this ZeroMQ context, "
            "so nothing would check who connects: start `Authenticator(ctx, creds)` on the "
            "same context before calling server_socket().")
    sock = ctx.socket(socket_type)
    monitor = None
    try:
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)  # no ZAP answer: refuse, never accept
        sock.curve_server = True
        sock.curve_secretkey = creds.secret
        sock.curve_publickey = creds.public
        sock.zap_domain = ZAP_DOMAIN
        _common_options(sock, handshake_ms)
        # Before bind, so no event is lost. Not get_monitor_socket(): it names the
        # endpoint after the socket's fd, which a new socket reuses while the old
        # socket's endpoint may still be registered (EADDRINUSE).
        name = f"inproc://actorscoop-monitor-{next(_monitor_ids)}"
        sock.monitor(name, _MONITOR_EVENTS)
        monitor = ctx.socket(zmq.PAIR)
        monitor.connect(name)
        sock.bind(f"tcp://{host}:{port or '*'}")
        endpoint = sock.last_endpoint.decode()
    except BaseException:
        if monitor is not None:
            monitor.close()
        sock.close()
        raise
    auth._watch(monitor, endpoint)
    return sock, int(endpoint.rsplit(":", 1)[1])


def client_socket(ctx, socket_type, creds, address, handshake_ms=HANDSHAKE_MS):
    """A socket that connects to ``address`` (``"tcp://host:port"``) with ``creds``.

    ZeroMQ connects in the background: with a wrong token, messages are never answered
    (and the server logs the refusal), so wait for replies with a deadline.
    """
    sock = ctx.socket(socket_type)
    try:
        sock.curve_serverkey = creds.public
        sock.curve_publickey = creds.public
        sock.curve_secretkey = creds.secret
        _common_options(sock, handshake_ms)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


# -- authentication --------------------------------------------------------------------

Refusal = collections.namedtuple("Refusal", "address reason time")
NO_KEY = "no key: the client does not use CURVE (plaintext, or no actorscoop token)"
WRONG_KEY = "wrong key: the client's token is not this cluster's"
_PROTOCOL_ERRORS = {zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: NO_KEY,
                    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: WRONG_KEY}


class Authenticator:
    """The ZAP handler of one ZeroMQ context: lets in only clients holding ``creds``.

    One thread answers ZeroMQ's authentication requests and reads the handshake
    failures of this context's server sockets. Each refusal is appended to ``refused``
    (the last 1000; ``refused_count`` counts all, ``refusals()`` by reason) and logged at
    WARNING once per (address, reason). The address is the peer's IP for a ZAP refusal; for a failed
    handshake ZeroMQ reports only the server's endpoint.
    """

    def __init__(self, ctx, creds: Credentials):
        self.ctx, self.creds = ctx, creds
        self._key = z85.decode(creds.public)  # ZAP hands over the raw 32-byte key
        self.refused = collections.deque(maxlen=1000)
        self.refused_count = 0
        self.refused_by_reason = collections.Counter()  # a few fixed reasons
        self._logged = set()
        self._cond = threading.Condition()
        self._new_monitors = []
        self._thread = None
        self._stopping = False

    def start(self) -> "Authenticator":
        """Bind the context's ZAP endpoint and start the thread. Raises ActorScoopError
        if the context already has a ZAP handler."""
        with _running_lock:
            zap = self.ctx.socket(zmq.REP)
            try:
                zap.bind(_ZAP_ENDPOINT)
            except zmq.ZMQError as exc:
                zap.close()
                raise ActorScoopError(f"cannot bind {_ZAP_ENDPOINT} ({exc}): this context "
                                      "already has a ZAP handler. Use one Authenticator "
                                      "per context.") from None
            self._stopping = False
            self._wake_r, self._wake_w = os.pipe()  # wakes the thread: new monitor, or stop
            self._thread = threading.Thread(target=self._run, args=(zap,), daemon=True,
                                            name=f"actorscoop-zap-{self.creds.fingerprint}")
            self._thread.start()
            _running[self.ctx] = self
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; server sockets of this context then refuse every client.
        Raises ActorScoopError if the thread does not end within ``timeout`` s."""
        with _running_lock:
            if _running.get(self.ctx) is self:
                del _running[self.ctx]
        if self._thread is None:
            return
        with self._cond:
            self._stopping = True
            os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise ActorScoopError(f"the ZAP thread {self._thread.name} did not stop in {timeout} s")
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._thread = None

    __enter__ = start

    def __exit__(self, *exc_info):
        self.stop()

    def refusals(self) -> dict:
        """reason -> connections refused for it so far."""
        with self._cond:
            return dict(self.refused_by_reason)

    def wait_refused(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until ``count`` connections in all have been refused; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.refused_count >= count, timeout)

    def _watch(self, monitor, endpoint):
        """Hand a server socket's monitor socket over to the thread."""
        with self._cond:
            if self._thread is None or self._stopping:  # stopped meanwhile: the socket
                monitor.close()                         # refuses everyone (enforced ZAP)
                return
            self._new_monitors.append((monitor, endpoint))
            os.write(self._wake_w, b"m")

    def _run(self, zap):
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        monitors = {}
        try:
            while True:
                for item, _ in poller.poll():
                    if item is zap:
                        self._answer(zap)
                    elif item == self._wake_r:
                        os.read(self._wake_r, 4096)
                        if self._stopping:
                            return
                        with self._cond:
                            new, self._new_monitors = self._new_monitors, []
                        for monitor, endpoint in new:
                            monitors[monitor] = endpoint
                            poller.register(monitor, zmq.POLLIN)
                    elif self._on_event(item, monitors[item]):
                        poller.unregister(item)
                        del monitors[item]
                        item.close()
        finally:
            with self._cond:
                monitors.update(self._new_monitors)
                self._new_monitors = []
            for monitor in monitors:
                monitor.close()
            zap.unbind(_ZAP_ENDPOINT)  # at once: close() frees the endpoint only later
            zap.close()

    def _answer(self, zap):
        """Answer one ZAP request (RFC 27): 200 for the cluster key, 400 otherwise."""
        frames = zap.recv_multipart()
        _version, request_id, _domain, address, _identity, mechanism = (frames + [b""] * 6)[:6]
        if mechanism != b"CURVE":
            reason = NO_KEY
        elif frames[6:7] != [self._key]:
            reason = WRONG_KEY
        else:
            user_id = self.creds.fingerprint.encode()  # msg.get("User-Id") on the server
            zap.send_multipart([b"1.0", request_id, b"200", b"OK", user_id, b""])
            return
        zap.send_multipart([b"1.0", request_id, b"400", reason.encode(), b"", b""])
        self._refuse(address.decode("utf-8", "replace") or "unknown", reason)

    def _on_event(self, monitor, endpoint) -> bool:
        """Record a failed handshake; True once the server socket is closed."""
        # imported here: zmq.utils.monitor imports asyncio (~15 ms of every node's start)
        from zmq.utils.monitor import parse_monitor_message
        event = parse_monitor_message(monitor.recv_multipart())
        kind, value = int(event["event"]), int(event["value"])
        if kind == zmq.EVENT_MONITOR_STOPPED:
            return True
        if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            reason = "handshake failed or timed out (not a ZeroMQ client?)"
        else:
            reason = _PROTOCOL_ERRORS.get(value, f"bad handshake (ZMTP error {value:#x})")
        self._refuse(f"unknown peer on {endpoint}", reason)
        return False

    def _refuse(self, address, reason):
        with self._cond:
            self.refused.append(Refusal(address, reason, time.time()))
            self.refused_count += 1
            self.refused_by_reason[reason] += 1
            first = (address, reason) not in self._logged
            if len(self._logged) > 10000:
                self._logged.clear()
            self._logged.add((address, reason))
            self._cond.notify_all()
        if first:
            log.warning("refused a connection from %s: %s", address, reason)
