"""The store's wire messages and their codec.  The only code that touches message bytes.

A message is one ZeroMQ frame: a msgpack map ``{"v": VERSION, "t": TYPE, **fields}``.
Object data never travels in messages: it is written and read in shared memory.
Requests carry a request id ``rid`` that the reply echoes; ``Release`` and ``Batch`` are one-way.
``decode`` raises ``ProtocolError`` for anything malformed; callers log and drop.
"""

import dataclasses
import math
import types
import typing

import msgpack

from ._errors import ProtocolError

VERSION = 4  # 2: data and metadata parts, eviction per object, notifications; 3: leases, Batch;
# 4: a "c" record may say the object was sealed (and its creator's buffer dropped) too; Gets

_MESSAGES: dict[str, type] = {}


def _message(tag: str):
    def register(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.TYPE = tag
        cls._FIELDS = tuple((f.name, f.type) for f in dataclasses.fields(cls))
        _MESSAGES[tag] = cls
        return cls
    return register


# -- requests (client -> store) ------------------------------------------------

@_message("connect")
class Connect:
    rid: int
    pid: int
    version: int


@_message("create")
class Create:
    rid: int
    object_id: bytes
    data_size: int  # with metadata_size -1: a raw block of this many bytes (sizes told at seal)
    metadata_size: int
    full_timeout: float  # how long to wait for pinned objects to be released when full
    evictable: bool  # the plasma API's objects: evicted (deleted) when room is needed, not spilled
    keep_pin: bool  # the creator keeps a pin after sealing, until it releases it (the plasma API's create)
    fallback_ok: bool  # an object larger than the store may go to a disk-backed file


@_message("seal")
class Seal:
    rid: int
    object_id: bytes
    metadata_size: int  # of a raw block (its data part is the rest); -1: as created
    reply: bool  # False: one-way (the plasma API's seal does not wait)


@_message("abort")
class Abort:
    rid: int
    object_id: bytes


@_message("get")
class Get:
    rid: int
    object_id: bytes
    timeout: float | None  # wait this long for the object to be sealed; None: do not wait


@_message("gets")
class Gets:
    """Pin every object of ``object_ids`` that is sealed (restoring it if spilled); do not wait.
    Answer: per id, ``[path, offset, size, data_size, metadata_size]`` as in Located, or None
    (not there, not sealed, or no room to restore it: ask with a Get to wait for it)."""
    rid: int
    object_ids: list[bytes]


@_message("release")
class Release:  # one-way: no reply
    object_ids: list[bytes]


@_message("lease")
class Lease:
    """Free what is left of this client's lease and give it a new region of ``size`` bytes to
    place small objects in itself (told to the store afterwards with Batch records). Answer:
    ``[offset, size]`` in the arena. Size 0: only free the old one."""
    rid: int
    size: int


@_message("batch")
class Batch:
    """One-way: records, handled in order. Each is a list:
    ``["c", id, offset, data_size, metadata_size, evictable, keep_pin, create_time, then]`` an
    object this client created at ``offset``, the front of its lease; ``then`` (RECORD_THEN) says
    whether the client sealed it too (1), and also dropped the creator's buffer (2), before the
    record left: one record instead of three; ``["s", id]`` seal;
    ``["r", id]`` the creator's buffer is gone (its pin, or a refused create's block);
    ``["p", id]`` release a pin, as Release."""
    records: list


RECORD_THEN = (0, 1, 2)  # a "c" record's last field: created only; and sealed; and the creator's buffer gone


@_message("contains")
class Contains:
    rid: int
    object_id: bytes


@_message("delete")
class Delete:
    rid: int
    object_ids: list[bytes]


@_message("list")
class ListObjects:
    rid: int


@_message("stats")
class Stats:
    rid: int


@_message("story")
class Story:
    rid: int
    object_id: bytes


@_message("disconnect")
class Disconnect:
    rid: int


@_message("evict")
class Evict:
    """Delete unpinned plasma-API objects, least recently used first, until num_bytes are freed."""
    rid: int
    num_bytes: int


@_message("subscribe")
class Subscribe:
    """From now on, send this client a Notification when an object is sealed or removed."""
    rid: int


# -- replies (store -> client) -------------------------------------------------

@_message("connected")
class Connected:
    rid: int
    arena_path: str
    capacity: int
    store_pid: int
    prefault_bytes: int  # how much of the arena the store pre-faults; clients map that much eagerly too
    ids_path: str  # the store's id filter (_idfilter.py), "" if none: then clients do not use leases


@_message("located")
class Located:
    """Reply to Create and Get: where the object's bytes are (a file and an offset in it)."""
    rid: int
    object_id: bytes
    path: str
    offset: int
    size: int  # of the whole block
    data_size: int
    metadata_size: int
    warning: str | None


@_message("answer")
class Answer:
    rid: int
    value: typing.Any


@_message("error")
class Error:
    rid: int
    kind: str  # name of an exception class in _errors
    message: str


@_message("notification")
class Notification:
    """To subscribers: an object was sealed, or removed (sizes -1). No reply."""
    object_id: bytes
    data_size: int
    metadata_size: int


MESSAGE_TYPES = tuple(_MESSAGES.values())


def encode(msg) -> bytes:
    """Encode one message to its frame."""
    if type(msg) not in MESSAGE_TYPES:
        raise TypeError(f"not a protocol message: {msg!r}")
    body = {"v": VERSION, "t": msg.TYPE}
    for name, _ in msg._FIELDS:
        body[name] = getattr(msg, name)
    return msgpack.packb(body, use_bin_type=True)


def decode(frame: bytes):
    """Decode one frame to a message; raise ProtocolError saying what is wrong with it."""
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"frame of {len(frame)} bytes is not msgpack: {exc}") from exc
    if not isinstance(body, dict):
        raise ProtocolError(f"message is a {type(body).__name__}, expected a map")
    version = body.pop("v", None)
    if version != VERSION:
        raise ProtocolError(f"protocol version {version!r}, this side speaks {VERSION}; "
                            "client and store come from different actorscoop versions")
    tag = body.pop("t", None)
    cls = _MESSAGES.get(tag) if type(tag) is str else None
    if cls is None:
        raise ProtocolError(f"unknown message type {tag!r:.40}")
    names = {name for name, _ in cls._FIELDS}
    if set(body) != names:
        raise ProtocolError(f"{cls.TYPE}: fields {sorted(map(repr, body))}, expected {sorted(names)}")
    for name, kind in cls._FIELDS:
        if not _type_ok(body[name], kind):
            raise ProtocolError(f"{cls.TYPE}.{name}: {type(body[name]).__name__} is not {kind}")
    return cls(**body)


def _type_ok(value, kind) -> bool:
    if kind is typing.Any:
        return True
    if isinstance(kind, types.UnionType):
        return any(_type_ok(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if isinstance(kind, types.GenericAlias):  # list[bytes]
        (item,) = typing.get_args(kind)
        return isinstance(value, typing.get_origin(kind)) and all(_type_ok(v, item) for v in value)
    if kind is float:  # finite: a timeout of inf or nan is no timeout a deadline can be made of
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is bool:
        return isinstance(value, bool)
    return isinstance(value, kind)


def peek_rid(frame: bytes) -> int | None:
    """The request id of a frame that failed to decode, if it has a readable one (to report the error)."""
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception:  # garbage: there is nobody to answer
        return None
    rid = body.get("rid") if isinstance(body, dict) else None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None
