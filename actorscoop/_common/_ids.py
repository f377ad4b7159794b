"""Identifiers. TaskID: 16 bytes (8 random per process + an 8-byte counter, so ids are
unique without a syscall each); ObjectID: TaskID + 4-byte return index (lineage)."""
import itertools
import os
import struct

TASK_ID_SIZE = 16
OBJECT_ID_SIZE = 20

_prefix = os.urandom(8)
_counter = itertools.count(1)
_pack_q = struct.Struct(">Q").pack
_pack_i = struct.Struct(">I").pack


def _reseed():
    global _prefix, _counter
    _prefix = os.urandom(8)
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


def new_task_id() -> bytes:
    return _prefix + _pack_q(next(_counter))


def object_id(task_id: bytes, index: int) -> bytes:
    return task_id + _pack_i(index)


def return_ids(task_id: bytes, num_returns: int) -> list:
    """The ids of a task's results (indices 1 .. num_returns)."""
    return [task_id + _pack_i(i) for i in range(1, num_returns + 1)]


def task_of(object_id_: bytes) -> bytes:
    return object_id_[:TASK_ID_SIZE]


def random_id() -> bytes:
    return os.urandom(16)
