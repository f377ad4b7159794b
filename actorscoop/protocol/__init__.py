"""Every message exchanged between actorscoop processes, and the codec.

This package is the only code that knows the wire format. A frame (length-prefixed on
a node's Unix sockets, a ZeroMQ message between nodes) holds a msgpack array of *records*; each record is ``[tag, field, ...]`` and
maps to one of the NamedTuple classes in :mod:`._messages`. Batching is therefore
free: a busy sender packs many records into one frame. The codec checks each field's
declared type; :mod:`._shapes` checks what is inside lists and dicts, for receivers to
call before they keep anything of a record.
"""
from ._codec import ProtocolError, decode, decode_or_log, encode
from ._messages import *  # noqa: F401,F403
from ._messages import MESSAGE_TYPES, PROTOCOL_VERSION
from ._shapes import (MAX_RETURNS, client_record_error, cluster_record_error, create_error, direct_call_error,
                      execute_error, fields_error, ids_error, leased_task_error, local_value_error,
                      resources_error, submit_error, value_rows_error)

__all__ = ["ProtocolError", "decode", "decode_or_log", "encode", "MESSAGE_TYPES", "PROTOCOL_VERSION",
           "MAX_RETURNS", "client_record_error", "cluster_record_error", "create_error", "direct_call_error",
           "execute_error", "fields_error", "ids_error", "leased_task_error", "local_value_error",
           "resources_error", "submit_error", "value_rows_error"]
__all__ += [cls.__name__ for cls in MESSAGE_TYPES]
