"""Encode lists of records to one frame and back; reject anything malformed."""
import msgpack

from ._messages import MESSAGE_TYPES

_TAG_OF = {cls: tag for tag, cls in enumerate(MESSAGE_TYPES)}
_ARITY = [len(cls._fields) for cls in MESSAGE_TYPES]
_packb = msgpack.Packer(use_bin_type=True).pack


class ProtocolError(ValueError):
    """A frame could not be decoded: it is logged and dropped by the receiver."""


def encode(records) -> bytes:
    """Pack records (NamedTuple messages) into one frame."""
    return _packb([(_TAG_OF[type(r)], *r) for r in records])


def decode(frame) -> list:
    """Unpack one frame into message objects.

    Raises ProtocolError when the frame is not a list of well-formed records; the
    caller logs it and drops the frame.
    """
    try:
        raw = msgpack.unpackb(frame, raw=False, use_list=True, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"undecodable frame ({len(frame)} bytes): {exc}") from None
    if not isinstance(raw, list):
        raise ProtocolError(f"frame is a {type(raw).__name__}, expected a list of records")
    out = []
    for rec in raw:
        if not isinstance(rec, list) or not rec or not isinstance(rec[0], int):
            raise ProtocolError(f"malformed record {rec!r:.80}")
        tag = rec[0]
        if not 0 <= tag < len(MESSAGE_TYPES) or len(rec) - 1 != _ARITY[tag]:
            raise ProtocolError(f"unknown tag or wrong arity in record {rec!r:.80}")
        out.append(MESSAGE_TYPES[tag]._make(rec[1:]))
    return out


def decode_or_log(frame, log, source) -> list:
    """Decode a frame; a malformed one is logged (naming ``source``) and gives no records."""
    try:
        return decode(frame)
    except ProtocolError as exc:
        log.warning("dropped a malformed frame from %s: %s", source, exc)
        return []
