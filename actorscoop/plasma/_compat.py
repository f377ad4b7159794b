"""The API of Arrow's removed ``pyarrow.plasma`` (Arrow 11), on this store.

``import actorscoop.plasma as plasma`` and code written for ``pyarrow.plasma`` runs:
``plasma.connect(socket)`` gives a ``PlasmaClient`` whose ``create`` returns a mutable
``pyarrow.Buffer`` on shared memory and whose ``get_buffers`` returns read-only ones.
What differs from Arrow, and why, is in docs/plasma.md. This module and ``_arrow.py`` are
the only ones that import pyarrow.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pyarrow as pa

from . import _layout
from . import _protocol as P
from . import _wire
from ._arena import socket_in_use
from ._client import StoreClient
from ._errors import ObjectExistsError, ObjectNotFoundError, ObjectStoreFullError, PlasmaError

ID_SIZE = 20


class PlasmaObjectExists(pa.lib.ArrowException):
    """Raised by create when an object with the id is already in the store."""


class PlasmaObjectNotFound(pa.lib.ArrowException):
    """Raised when an object is not in the store (hash, seal of an unknown object)."""


class PlasmaStoreFull(pa.lib.ArrowException):
    """Raised by create when the store cannot make room (every object is in use)."""


class ObjectID:
    """A 20-byte object id."""

    __slots__ = ("_id",)

    def __init__(self, object_id: bytes):
        if not isinstance(object_id, bytes) or len(object_id) != ID_SIZE:
            raise ValueError(f"Object ID must by 20 bytes, is {object_id!r:.60}")
        self._id = object_id

    @classmethod
    def from_random(cls) -> "ObjectID":
        return cls(os.urandom(ID_SIZE))

    def binary(self) -> bytes:
        return self._id

    def __eq__(self, other):
        return isinstance(other, ObjectID) and other._id == self._id

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self._id)

    def __reduce__(self):
        return ObjectID, (self._id,)

    def __repr__(self):
        return f"ObjectID({self._id.hex()})"


class _NotAvailable:
    """What ``get`` returns for an object that is not there in time."""

    def __repr__(self):
        return "ObjectNotAvailable"

    def __reduce__(self):
        return "ObjectNotAvailable"


ObjectNotAvailable = _NotAvailable()


class _Writable:
    """Holds the creator's pin of an object being created, and keeps its mapping alive: it hangs
    on the exporter of the buffers ``create`` returns, so when the last buffer over it dies the
    pin is given back (before or after the seal). ``__del__``, not weakref.finalize: this is
    the hot path of small creates, and a finalizer costs several microseconds more."""

    __slots__ = ("keep", "object_id", "client")

    def __init__(self, keep, object_id: bytes, client: StoreClient):
        self.keep = keep  # the mapping (or an array over it)
        self.object_id = object_id
        self.client = client

    def __del__(self):
        try:
            self.client.release_creator(self.object_id)
        except (AttributeError, TypeError):  # interpreter shutdown: the store releases a departed client's pins
            return


class PlasmaClient:
    """A connection to a store (``connect`` makes one). Thread-safe; not fork-safe."""

    def __init__(self, store_socket_name: str, client: StoreClient):
        self.store_socket_name = store_socket_name
        self._client = client
        self._created: set[bytes] = set()  # created here, not sealed yet
        self._notifications = None

    # -- writing ---------------------------------------------------------------

    def create(self, object_id: ObjectID, data_size: int, metadata=b""):
        """Create an object with ``data_size`` bytes of data and ``metadata``; return a mutable
        ``pyarrow.Buffer`` over its data in shared memory. The object is in use (it cannot be
        evicted) while that buffer (or anything built on it) lives. Seal it to make it readable.
        Raises PlasmaObjectExists, or PlasmaStoreFull when no room can be made."""
        oid = object_id._id if type(object_id) is ObjectID else _binary(object_id)
        client = self._client
        data_size = int(data_size)
        try:
            address = client.place_in_lease(oid, data_size, metadata, True, True)
            if address is None:
                keep = client.create(oid, data_size, metadata, wait=0.0, evictable=True, keep_pin=True,
                                     fallback_ok=False)
                address = keep.__array_interface__["data"][0]
            else:
                keep = client._arena
        except PlasmaError as exc:
            raise _arrow_error(exc) from None
        self._created.add(oid)
        exporter = (ctypes.c_ubyte * data_size).from_address(address)
        exporter.holder = _Writable(keep, oid, client)
        return pa.py_buffer(exporter)  # (bytes, writable: a ctypes array of c_ubyte exports as such)

    def _create(self, oid: bytes, data_size: int, metadata, keep_pin: bool):
        """A small object goes in this client's lease (no round trip); else, or when the id may be
        taken, the store creates it (and says if the id is taken, or if there is no room)."""
        data = self._client.create_in_lease(oid, data_size, metadata, evictable=True, keep_pin=keep_pin)
        if data is None:
            data = self._client.create(oid, data_size, metadata, wait=0.0, evictable=True, keep_pin=keep_pin,
                                       fallback_ok=False)
        return data

    def seal(self, object_id: ObjectID) -> None:
        """Make an object this client created readable; it can no longer be written."""
        oid = object_id._id if type(object_id) is ObjectID else _binary(object_id)
        if oid not in self._created:
            raise PlasmaObjectNotFound(f"object {oid.hex()} was not created by this client, or is sealed "
                                       "already")
        self._created.discard(oid)
        self._client.seal(oid, wait=False)  # as Arrow's: the store's answer is not waited for

    def abort(self, object_id: ObjectID) -> None:
        """Drop an object this client created and has not sealed."""
        oid = _binary(object_id)
        self._created.discard(oid)
        self._call(self._client.abort, oid)

    def create_and_seal(self, object_id: ObjectID, data, metadata=b"") -> None:
        """Store ``data`` (bytes-like) and ``metadata`` as a sealed object."""
        oid = _binary(object_id)
        view = _layout.as_bytes(data)
        try:
            dst = self._create(oid, len(view), metadata or b"", keep_pin=False)
        except PlasmaError as exc:
            raise _arrow_error(exc) from None
        _layout.copy(dst, 0, view)
        del dst
        self._client.seal(oid, wait=False)

    def put_raw_buffer(self, value, object_id: ObjectID | None = None, metadata=b"",
                       memcopy_threads: int = 6) -> ObjectID:
        """Store the bytes of ``value`` (any contiguous buffer) as an object; return its id."""
        object_id = object_id or ObjectID.from_random()
        self.create_and_seal(object_id, value, metadata)
        return object_id

    def put(self, value, object_id: ObjectID | None = None, memcopy_threads: int = 6,
            serialization_context=None) -> ObjectID:
        """Store a Python value; return its id. Arrow tables, record batches, arrays and tensors
        are stored as Arrow IPC, anything else with pickle protocol 5 (Arrow's store used its
        removed serialization module instead; ``serialization_context`` is not supported)."""
        if serialization_context is not None:
            raise NotImplementedError("serialization_context belonged to pyarrow.serialization, which "
                                      "Arrow removed; make the type picklable instead")
        object_id = object_id or ObjectID.from_random()
        oid = _binary(object_id)
        try:
            if _layout.is_arrow(value):
                self._client.put(oid, value)
            else:
                stream, buffers = _dumps(value)
                self._client.put_parts(oid, stream, buffers)
        except PlasmaError as exc:
            raise _arrow_error(exc) from None
        return object_id

    # -- reading ---------------------------------------------------------------

    def get_buffers(self, object_ids, timeout_ms: int = -1, with_meta: bool = False):
        """Read-only ``pyarrow.Buffer``s of the objects' data (with ``with_meta``: tuples
        ``(metadata, data)``); ``None`` for an object not sealed within ``timeout_ms``
        milliseconds (-1: wait for ever). A buffer keeps its object in use while it lives."""
        out = []
        for part in self._read_all(object_ids, timeout_ms):
            if part is None:
                out.append((None, None) if with_meta else None)
            else:
                metadata, data = pa.py_buffer(part[1]), pa.py_buffer(part[2])
                out.append((metadata, data) if with_meta else data)
        return out

    def get_metadata(self, object_ids, timeout_ms: int = -1):
        """Read-only ``pyarrow.Buffer``s of the objects' metadata; ``None`` where not there in time."""
        return [None if part is None else pa.py_buffer(part[1]) for part in self._read_all(object_ids, timeout_ms)]

    def get(self, object_ids, timeout_ms: int = -1, serialization_context=None):
        """The values ``put`` stored (one id, or a list of ids); ``ObjectNotAvailable`` for an
        object not there within ``timeout_ms`` milliseconds (-1: wait for ever)."""
        if isinstance(object_ids, ObjectID):
            return self.get([object_ids], timeout_ms, serialization_context)[0]
        out = []
        for part in self._read_all(object_ids, timeout_ms):
            if part is None:
                out.append(ObjectNotAvailable)
                continue
            header, metadata, data = part
            if header is None:
                raise PlasmaError("object was not written by put (no runtime header): read it with get_buffers")
            if header.kind == _layout.PICKLE5:
                out.append(pickle.loads(data[:header.stream[1]],
                                        buffers=[data[o:o + n] for o, n in header.buffers]))
            else:
                from . import _arrow
                out.append(_arrow.load(header, data))
        return out

    def contains(self, object_id: ObjectID) -> bool:
        """True if the object is in the store and sealed."""
        return self._client.contains(_binary(object_id))

    def hash(self, object_id: ObjectID) -> bytes:
        """An 8-byte digest of the object's data and metadata (BLAKE2b; Arrow's used XXH64, so
        digests differ from Arrow's but are equal for equal objects here too)."""
        part = self._read_all([object_id], 0)[0]
        if part is None:
            raise PlasmaObjectNotFound(f"object {_binary(object_id).hex()} is not in the store")
        digest = hashlib.blake2b(digest_size=8)
        digest.update(part[2])
        digest.update(part[1])
        return digest.digest()

    # -- management ------------------------------------------------------------

    def delete(self, object_ids) -> None:
        """Delete objects; an object in use is deleted when the last buffer over it goes."""
        self._call(self._client.delete, [_binary(o) for o in object_ids])

    def evict(self, num_bytes: int) -> int:
        """Delete unused objects made through this API, least recently used first, until
        ``num_bytes`` are freed; return the bytes freed. The runtime's objects are spilled to
        disk when room is needed, never evicted."""
        return self._call(self._client.evict, int(num_bytes))

    def list(self) -> dict:
        """Every object: ``{ObjectID: {data_size, metadata_size, ref_count, create_time,
        construct_duration, state}}`` (state "created" or "sealed"; times in seconds)."""
        out = {}
        for o in self._call(self._client.list_objects):
            if o["where"] == "spilled":
                continue  # not in memory: Arrow's store had no such objects
            created = o["state"] == "CREATED"
            out[ObjectID(o["id"])] = {
                "data_size": o["data_size"], "metadata_size": o["metadata_size"],
                "ref_count": o["pins"] + (1 if created else 0), "create_time": int(o["create_time"]),
                "construct_duration": -1 if created else int(o["construct_duration"]),
                "state": "created" if created else "sealed",
            }
        return out

    def store_capacity(self) -> int:
        return self._client.capacity

    def subscribe(self) -> None:
        """Receive a notification for every object sealed or removed from now on
        (``get_next_notification``)."""
        if self._notifications is None:
            self._notifications = _Notifications(self._client.socket_path, self._client.timeout)

    def get_notification_socket(self):
        """The connection notifications arrive on: ``fileno()`` (poll it with select, or
        ``zmq.Poller``), ``poll(timeout_ms)``, and ``recv()`` of one message, for
        ``decode_notification`` (or call ``get_next_notification``). A Unix socket, as Arrow's
        was; its messages are msgpack, not flatbuffers."""
        self._require_subscribed()
        return self._notifications

    def get_next_notification(self):
        """Wait for the next notification: ``(ObjectID, data_size, metadata_size)``; the sizes
        are -1 for an object that was deleted or evicted."""
        self._require_subscribed()
        note = self._notifications.next()
        return ObjectID(note.object_id), note.data_size, note.metadata_size

    def decode_notification(self, buf):
        """Decode one message read from the notification socket: ``(ObjectID, data_size, metadata_size)``."""
        note = P.decode(bytes(buf))
        return ObjectID(note.object_id), note.data_size, note.metadata_size

    def decode_notifications(self, buf):
        """Decode a frame read from the notification socket: ``(ids, data_sizes, metadata_sizes)``."""
        note = P.decode(bytes(buf))
        return [ObjectID(note.object_id)], [note.data_size], [note.metadata_size]

    def disconnect(self) -> None:
        """Close the connection; the store releases every object this client still used."""
        if self._notifications is not None:
            self._notifications.close()
            self._notifications = None
        self._client.close()

    def debug_string(self) -> str:
        return "\n".join(f"{o!r}: {info}" for o, info in self.list().items())

    # -- internals -------------------------------------------------------------

    def _read_all(self, object_ids, timeout_ms: int):
        """(header, metadata view, data view) per id, or None; one deadline for all of them. What is
        there comes in one round trip; then each missing object is waited for, until the deadline."""
        ids = [_binary(o) for o in object_ids]
        deadline = None if timeout_ms is None or timeout_ms < 0 else time.monotonic() + timeout_ms / 1000
        try:
            out = self._client.read_many(ids)
        except PlasmaError as exc:
            raise _arrow_error(exc) from None
        for i, oid in enumerate(ids):
            if out[i] is not None:
                continue
            wait = _FOREVER if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                continue
            try:
                out[i] = self._client.read(oid, wait)
            except ObjectNotFoundError:
                pass
            except PlasmaError as exc:
                raise _arrow_error(exc) from None
        return out

    def _call(self, method, *args):
        try:
            return method(*args)
        except PlasmaError as exc:
            raise _arrow_error(exc) from None

    def _require_subscribed(self):
        if self._notifications is None:
            raise PlasmaError("not subscribed: call subscribe() first")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()


_FOREVER = 365 * 24 * 3600.0  # "wait for ever": a year


class _Notifications:
    """A second connection to the store, on which Notification messages arrive. What
    ``get_notification_socket`` returns: ``fileno()`` (for select, poll, ``zmq.Poller``),
    ``poll(timeout_ms)`` and ``recv()``, one message each, read whole, so the fd is readable
    exactly while a notification waits."""

    def __init__(self, socket_path: str, timeout: float):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(socket_path)
        except OSError as exc:
            self.sock.close()
            raise PlasmaError(f"cannot connect to the store at {socket_path} for notifications: {exc}") from None
        self.timeout = timeout
        self._call(P.Connect(1, os.getpid(), P.VERSION))
        self._call(P.Subscribe(2))

    def fileno(self) -> int:
        return self.sock.fileno()

    def poll(self, timeout_ms: int | None = None) -> bool:
        """Whether a notification is there to ``recv`` within ``timeout_ms`` (None: wait for one)."""
        return _wire.wait_readable(self.sock, timeout_ms)

    def recv(self) -> bytes:
        """The next message (wait for it); decode it with ``PlasmaClient.decode_notification``."""
        (n,) = struct.unpack("<I", self._exactly(4))
        return self._exactly(n)

    def _exactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise OSError("the store closed the notification connection (it exited?)")
            buf += chunk
        return bytes(buf)

    def _call(self, msg):
        self.sock.sendall(_wire.frame(P.encode(msg)))
        while True:
            if not self.poll(int(self.timeout * 1000)):
                raise OSError(f"the store did not answer {msg.TYPE} within {self.timeout}s")
            reply = P.decode(self.recv())
            if isinstance(reply, P.Error):
                raise PlasmaError(reply.message)
            if getattr(reply, "rid", None) == msg.rid:
                return reply

    def next(self) -> P.Notification:
        while True:
            msg = P.decode(self.recv())
            if isinstance(msg, P.Notification):
                return msg

    def close(self):
        self.sock.close()


def connect(store_socket_name: str, manager_socket_name: str = "", release_delay: int = 0,
            num_retries: int = -1) -> PlasmaClient:
    """Connect to the store at ``store_socket_name``; retry ``num_retries`` times, 0.1 s
    apart (-1: 50 times), then raise IOError. (The middle two arguments are accepted for
    code written for old Arrow releases and ignored.)"""
    if isinstance(manager_socket_name, int):  # connect(name, num_retries) as in Arrow >= 0.14
        num_retries, manager_socket_name = manager_socket_name, ""
    retries = 50 if num_retries is None or num_retries < 0 else num_retries
    path = os.path.abspath(store_socket_name)
    for attempt in range(retries + 1):
        if socket_in_use(path):
            try:
                return PlasmaClient(store_socket_name, StoreClient(path, timeout=10.0))
            except PlasmaError as exc:
                error = exc
        else:
            error = None
        if attempt < retries:
            time.sleep(0.1)
    why = f": {error}" if error is not None else ": nothing listens there"
    raise OSError(f"could not connect to the plasma store at {store_socket_name} after {retries} retries{why}")


@contextlib.contextmanager
def start_plasma_store(plasma_store_memory: int, use_valgrind: bool = False, use_profiler: bool = False,
                       plasma_directory: str | None = None, use_hugepages: bool = False,
                       external_store: str | None = None):
    """Start a store process of ``plasma_store_memory`` bytes on a fresh socket; yield
    ``(socket_name, process)``; stop it at the end. ``plasma_directory`` holds its memory file
    (e.g. a hugetlbfs mount, with ``use_hugepages``). Valgrind, the profiler and external
    stores belonged to Arrow's C++ store and are refused."""
    if use_valgrind or use_profiler:
        raise ValueError("use_valgrind and use_profiler ran Arrow's C++ store under valgrind; this store is Python")
    if external_store is not None:
        raise ValueError("external stores are not supported: objects that do not fit are evicted")
    tmpdir = tempfile.mkdtemp(prefix="plasma-")
    name = os.path.join(tmpdir, "plasma.sock")
    cmd = [sys.executable, "-m", "actorscoop.plasma", "-s", name, "-m", str(int(plasma_store_memory))]
    if plasma_directory:
        cmd += ["-d", plasma_directory]
    if use_hugepages:
        cmd.append("-h")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode(errors="replace").strip()
        if not line.startswith("READY"):
            proc.wait(10)
            raise RuntimeError(f"plasma store exited unexpectedly with code {proc.returncode}: {line}")
        yield name, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


def _binary(object_id) -> bytes:
    if isinstance(object_id, ObjectID):
        return object_id.binary()
    raise TypeError(f"expected an ObjectID, got {type(object_id).__name__}")


def _dumps(value):
    buffers = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return stream, buffers


def _arrow_error(exc: PlasmaError) -> Exception:
    if isinstance(exc, ObjectExistsError):
        return PlasmaObjectExists(str(exc))
    if isinstance(exc, ObjectStoreFullError):
        return PlasmaStoreFull(str(exc))
    if isinstance(exc, ObjectNotFoundError):
        return PlasmaObjectNotFound(str(exc))
    return exc
