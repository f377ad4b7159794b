"""Every message type round-trips; malformed frames are rejected, and a live raylet
logs and drops them and keeps serving."""
import os
import typing

import fuzz_strategies as FS
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actorscoop as asc
from actorscoop import protocol as P

@pytest.mark.parametrize("cls", P.MESSAGE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_round_trip_every_message(cls, data):
    msg = cls(*data.draw(FS.typed_fields(cls)))
    frame = P.encode([msg, msg])
    decoded = P.decode(frame)
    assert [type(r) for r in decoded] == [cls, cls] and P.encode(decoded) == frame  # (NaN != NaN)


@pytest.mark.parametrize("cls", [c for c in P.MESSAGE_TYPES if c._fields], ids=lambda c: c.__name__)
def test_a_field_of_the_wrong_type_is_rejected_by_name(cls):
    hints = typing.get_type_hints(cls)
    valid = [None if typing.get_origin(k) is typing.Union or k is typing.Any else k() for k in hints.values()]
    P.decode(msgpack.packb([[P.MESSAGE_TYPES.index(cls), *valid]], use_bin_type=True))
    for i, name in enumerate(cls._fields):
        if hints[name] is typing.Any:
            continue
        fields = list(valid)
        is_dict = dict in (hints[name], *typing.get_args(hints[name]))  # Optional[dict] too
        fields[i] = ["not", "a", "dict"] if is_dict else {"not": "a list"}
        frame = msgpack.packb([[P.MESSAGE_TYPES.index(cls), *fields]], use_bin_type=True)
        with pytest.raises(P.ProtocolError, match=f"{cls.__name__} record whose {name} is a"):
            P.decode(frame)


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([[999, 1]]), msgpack.packb([["x"]]),
    msgpack.packb([[0, 1, 2]]), msgpack.packb([[]]), msgpack.packb([5]),
])
def test_malformed_frames_raise_protocol_error(frame):
    with pytest.raises(P.ProtocolError):
        P.decode(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_never_raises_anything_else(frame):
    try:
        P.decode(frame)
    except P.ProtocolError:
        pass


def _raw(path):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def _frame(payload):
    import struct
    return struct.pack("<I", len(payload)) + payload


def test_raylet_survives_bad_input(node):
    from actorscoop.transport import Connection
    path = os.path.join(os.path.realpath(os.path.join(asc._client._context.current().session_dir, "sockets")),
                        "raylet.sock")
    # Garbage before any Hello, and a Hello of another protocol version: refused.
    c = Connection(path)
    for frame in (b"", b"garbage", msgpack.packb([[0]]), msgpack.packb([[2, "x", 1]])):
        c.send(frame)
    c.send(P.encode([P.Hello(P.PROTOCOL_VERSION + 99, "driver", 1, b"v" * 16, "")]))
    reply = P.decode(c.recv(10))
    assert isinstance(reply[0], P.Refused) and "protocol version" in reply[0].reason
    c.close()
    # A client that says Hello, then sends nonsense of every kind.
    c = Connection(path)
    c.send(P.encode([P.Hello(P.PROTOCOL_VERSION, "driver", os.getpid(), os.urandom(16), "fuzz")]))
    assert isinstance(P.decode(c.recv(10))[0], P.Welcome)
    bad = [b"garbage", msgpack.packb({"a": 1}),
           P.encode([P.SubmitTask(b"x", b"y", "n", None, None, [], [], 1, {}, 0, False, None, None)]),
           P.encode([P.GetObjects([b"nope" * 5]), P.RefDelta([b"a" * 20], [b"b" * 20]),
                     P.TaskDone(b"z" * 16, [[1, 2]], False, False, 0.0, 0.0, None),
                     P.CallsDone([[b"x", "n", "bad", None, None, b""], "junk"]), P.StatusRequest(7, "tasks"),
                     P.ReturnAddress("/etc/passwd"), P.Blocked(["x"], [b"y"], 1),
                     P.SubmitTask(os.urandom(16), os.urandom(16), "n", b"\0", None, [b"q"], [], 1,
                                  {"CPU": "lots"}, 0, False, None, None),
                     P.SubmitTask(os.urandom(16), b"", "m", b"\0", None, [], [], 1, {}, 0, False,
                                  os.urandom(16), "incr"),
                     P.KillActor(b"nope", True),
                     P.CreateActor(0, b"a" * 16, "C", "", "", False, False, 0, 0, 1, {}, False, b"junk"),
                     P.Hello(P.PROTOCOL_VERSION, "driver", 1, b"again", "")])]
    for frame in bad:
        c.send(frame)
    got = []
    while True:
        frame = c.recv(5)
        assert frame is not None, "the raylet stopped answering"
        got += P.decode(frame)
        if any(isinstance(r, P.ObjectValue) for r in got):
            break
    c.close()
    # An absurd length prefix, and a frame cut short by a hang-up: the connection is dropped.
    s = _raw(path)
    s.sendall(b"\xff\xff\xff\x7f" + b"x" * 100)
    assert s.recv(100) == b""
    s.close()
    s = _raw(path)
    s.sendall(_frame(b"x" * 1000)[:500])
    s.close()

    @asc.remote
    def still_works():
        return "yes"

    assert asc.get(still_works.remote(), timeout=30) == "yes"
