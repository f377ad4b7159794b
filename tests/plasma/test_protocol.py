"""Every message round-trips through the codec; malformed frames raise ProtocolError."""

import dataclasses
import typing

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from actorscoop.plasma import _protocol as P
from actorscoop.plasma._errors import ProtocolError

pytestmark = pytest.mark.timeout(60)

EXAMPLES = [
    P.Connect(1, 1234, P.VERSION),
    P.Create(2, b"\x00" * 20, 10**12, 64, 5.0, False, False, True),
    P.Create(2, b"\x00" * 20, 100, -1, 0.0, True, True, False),
    P.Seal(3, b"id", -1, True),
    P.Seal(3, b"id", 80, False),
    P.Evict(18, 1000),
    P.Subscribe(19),
    P.Notification(b"id", -1, -1),
    P.Abort(4, b"id"),
    P.Get(5, b"id", None),
    P.Get(6, b"id", 0.5),
    P.Release([b"a", b"b" * 20]),
    P.Contains(7, b"id"),
    P.Delete(8, [b"a", b"b"]),
    P.ListObjects(9),
    P.Stats(10),
    P.Disconnect(11),
    P.Story(17, b"id"),
    P.Connected(12, "/dev/shm/x", 1 << 30, 99, 1 << 30, "/dev/shm/ids"),
    P.Lease(20, 1 << 20),
    P.Batch([["c", b"id", 4096, 1000, 0, True, True, 1.5, 2], ["s", b"id"], ["r", b"id"], ["p", b"id"]]),
    P.Gets(21, [b"a", b"b" * 20]),
    P.Answer(22, [["/dev/shm/x", 4096, 1024, 1000, 0], None]),
    P.Located(13, b"id", "/dev/shm/x", 4096, 100, 36, 0, None),
    P.Located(14, b"id", "/tmp/f", 0, 100, 0, 100, "too big"),
    P.Answer(15, [{"id": b"x", "size": 1, "state": "SEALED", "pins": 0, "where": "shm", "lru": None}]),
    P.Error(16, "ObjectNotFoundError", "gone"),
]


def test_every_message_type_has_an_example():
    assert {type(m) for m in EXAMPLES} == set(P.MESSAGE_TYPES)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_roundtrip(msg):
    assert P.decode(P.encode(msg)) == msg


_values = {int: st.integers(0, 2**63 - 1), bool: st.booleans(), bytes: st.binary(max_size=64), str: st.text(max_size=64),
           float: st.floats(0, 1e9), list[bytes]: st.lists(st.binary(max_size=24), max_size=5),
           float | None: st.none() | st.floats(0, 1e9), str | None: st.none() | st.text(max_size=20),
           list: st.lists(st.lists(st.binary(max_size=24) | st.integers(0, 2**63 - 1) | st.booleans(), max_size=8),
                          max_size=5),
           typing.Any: st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.binary()
                                    | st.text(), lambda inner: st.lists(inner, max_size=4)
                                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)}


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_roundtrip_random_fields(data):
    for cls in P.MESSAGE_TYPES:
        fields = {f.name: data.draw(_values[f.type], label=f.name)
                  for f in dataclasses.fields(cls)}
        msg = cls(**fields)
        assert P.decode(P.encode(msg)) == msg


@pytest.mark.parametrize("frame, match", [
    (b"\xc1garbage", "not msgpack"),
    (msgpack.packb([1, 2]), "expected a map"),
    (msgpack.packb({"v": 999, "t": "seal", "rid": 1, "object_id": b"x", "metadata_size": -1, "reply": True}),
     "protocol version 999"),
    (msgpack.packb({"v": P.VERSION, "t": "nope"}), "unknown message type"),
    (msgpack.packb({"v": P.VERSION, "t": "seal", "rid": 1}), "fields"),
    (msgpack.packb({"v": P.VERSION, "t": "seal", "rid": 1, "object_id": b"x", "metadata_size": -1, "reply": True,
                    "extra": 1}), "fields"),
    (msgpack.packb({"v": P.VERSION, "t": "seal", "rid": "1", "object_id": b"x", "metadata_size": -1,
                    "reply": True}), "seal.rid"),
    (msgpack.packb({"v": P.VERSION, "t": "seal", "rid": 1, "object_id": b"x", "metadata_size": -1,
                    "reply": 1}), "seal.reply"),
    (msgpack.packb({"v": P.VERSION, "t": "create", "rid": 1, "object_id": b"x", "data_size": True,
                    "metadata_size": 0, "full_timeout": 1.0, "evictable": False, "keep_pin": False,
                    "fallback_ok": True}), "create.data_size"),
    (msgpack.packb({"v": P.VERSION, "t": "get", "rid": 1, "object_id": b"x", "timeout": float("inf")}), "get.timeout"),
    (msgpack.packb({"v": P.VERSION, "t": "release", "object_ids": [b"x", "y"]}), "release.object_ids"),
    (msgpack.packb({"v": P.VERSION, "t": {}}), "unknown message type"),
    (msgpack.packb({"v": P.VERSION, "t": "seal", "rid": 1, 5: b"x"}), "fields"),
])
def test_malformed_frames_raise_protocol_error(frame, match):
    with pytest.raises(ProtocolError, match=match):
        P.decode(frame)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.binary(max_size=8)
                    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["v", "t", "rid", "object_id", "object_ids", "timeout", 3]),
                                      inner, max_size=5), max_leaves=12))
def test_decode_raises_nothing_but_protocol_error(body):
    """Whatever the map holds (a type that is a dict, a key that is an int): ProtocolError."""
    try:
        P.decode(msgpack.packb(body, use_bin_type=True))
    except ProtocolError:
        pass


def test_encode_rejects_non_messages():
    with pytest.raises(TypeError, match="not a protocol message"):
        P.encode({"t": "seal"})
