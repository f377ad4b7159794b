"""Encode lists of records to one frame and back; reject anything malformed.

A record must have a known tag, the right number of fields and, for each field, the type
its message declares (``bytes``, ``str``, ``int``, ``bool``, ``float``, ``list``, ``dict``,
``Optional[...]``; ``Any`` is not checked): a handler never sees a field of the wrong
type. The check is one generated boolean expression per message type (~0.1 µs a record,
measured), made when the first record of that type arrives; what is inside lists and dicts
is for the receiver to check.
"""
import typing

import msgpack

from ._messages import MESSAGE_TYPES

_TAG_OF = {cls: tag for tag, cls in enumerate(MESSAGE_TYPES)}
_ARITY = [len(cls._fields) for cls in MESSAGE_TYPES]
_packb = msgpack.Packer(use_bin_type=True).pack
_EXACT = (bytes, str, int, bool, list, dict)


class ProtocolError(ValueError):
    """A frame could not be decoded: it is logged and dropped by the receiver."""


def _type_test(expr, kind):
    """Python source that is true when ``expr`` is of the declared type ``kind``, or None
    when anything goes."""
    if kind is typing.Any:
        return None
    if kind in _EXACT:
        return f"type({expr}) is {kind.__name__}"
    if kind is float:
        return f"type({expr}) in _NUMBER"
    if typing.get_origin(kind) is typing.Union:
        tests = [_type_test(expr, k) for k in typing.get_args(kind) if k is not type(None)]
        if None in tests:
            return None
        return f"({expr} is None or {' or '.join(tests)})"
    raise TypeError(f"no wire type check for {kind!r}")


def _checker(cls):
    """A function of a raw record ``[tag, *fields]``: True if every field has its type."""
    hints = typing.get_type_hints(cls)
    tests = [t for i, name in enumerate(cls._fields, 1) if (t := _type_test(f"r[{i}]", hints[name]))]
    return eval("lambda r: " + (" and ".join(tests) or "True"), {"_NUMBER": (int, float)})  # noqa: S307


def _first_check(tag):
    """Make the type's checker on its first record (building all 80 at import took 15-27 ms
    of every process's start, for types most processes never receive)."""
    def check(rec):
        made = _CHECK[tag] = _checker(MESSAGE_TYPES[tag])
        return made(rec)
    return check


_CHECK = [_first_check(tag) for tag in range(len(MESSAGE_TYPES))]


def _wrong_field(cls, rec):
    """The name of the first field of ``rec`` whose type is wrong, and the type it has."""
    hints = typing.get_type_hints(cls)
    for i, name in enumerate(cls._fields, 1):
        test = _type_test("v", hints[name])
        if test is not None and not eval(test, {"_NUMBER": (int, float), "v": rec[i]}):  # noqa: S307
            return f"{name} is a {type(rec[i]).__name__}"
    return "?"


def encode(records) -> bytes:
    """Pack records (NamedTuple messages) into one frame."""
    return _packb([(_TAG_OF[type(r)], *r) for r in records])


def decode(frame) -> list:
    """Unpack one frame into message objects.

    Raises ProtocolError when the frame is not a list of well-formed records (a known
    tag, its number of fields, each of its declared type); the caller logs it and drops
    the frame.
    """
    try:
        raw = msgpack.unpackb(frame, raw=False, use_list=True, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"undecodable frame ({len(frame)} bytes): {exc}") from None
    if not isinstance(raw, list):
        raise ProtocolError(f"frame is a {type(raw).__name__}, expected a list of records")
    out = []
    for rec in raw:
        if not isinstance(rec, list) or not rec or type(rec[0]) is not int:
            raise ProtocolError(f"malformed record {rec!r:.80}")
        tag = rec[0]
        if not 0 <= tag < len(MESSAGE_TYPES) or len(rec) - 1 != _ARITY[tag]:
            raise ProtocolError(f"unknown tag or wrong arity in record {rec!r:.80}")
        cls = MESSAGE_TYPES[tag]
        if not _CHECK[tag](rec):
            raise ProtocolError(f"{cls.__name__} record whose {_wrong_field(cls, rec)}")
        out.append(cls._make(rec[1:]))
    return out


def decode_or_log(frame, log, source) -> list:
    """Decode a frame; a malformed one is logged (naming ``source``) and gives no records."""
    try:
        return decode(frame)
    except ProtocolError as exc:
        log.warning("dropped a malformed frame from %s: %s", source, exc)
        return []
