"""Hypothesis strategies for bad input: protocol records whose fields have the wrong type
or hostile content, frames that are garbage, truncated or oversized, and the plasma
store's request maps. Used by tests/test_fuzz_*.py (a few hundred examples) and by
ci/reliability_fuzz.py (thousands).

Most generated records are *almost* right (the right tag and arity, most fields of the
right type, ids from a small pool so that records refer to each other: a TaskDone for a
task submitted earlier, a Heartbeat of a node that joined) because that is what reaches
the handlers; a decoder that rejects pure noise is the easy part.
"""
import typing

import msgpack
from hypothesis import strategies as st

from actorscoop import protocol as P
from actorscoop.plasma import _protocol as PP

# A small pool of ids, so that records of one run refer to the same tasks, objects,
# actors and nodes (out-of-order and duplicate messages), and tables a well-formed record
# may legitimately grow (functions, KV keys, joined nodes) stay bounded.
IDS = [bytes([i]) * 16 for i in range(6)] + [bytes([i]) * 16 + b"\0\0\0\1" for i in range(6)]
NAMES = ["", "f", "x" * 300, "é", "a.b"]

ids = st.sampled_from(IDS)
any_int = st.integers(-2**63, 2**64 - 1)  # what msgpack can carry
junk = st.recursive(
    st.one_of(st.none(), st.booleans(), any_int, st.floats(),
              st.binary(max_size=40), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.text(max_size=4), any_int, st.binary(max_size=4)),
                                            inner, max_size=3)),
    max_leaves=8)
some_bytes = st.one_of(ids, st.binary(max_size=24))
small_int = st.one_of(st.integers(-3, 8), any_int)
resources = st.dictionaries(st.sampled_from(["CPU", "GPU", "memory", "b", ""]),
                            st.one_of(st.integers(-2, 4), st.floats(), junk), max_size=3)
kinds = st.one_of(st.integers(-1, 4), junk)


def mostly(strategy, other, times=7):
    """``strategy`` about ``times`` times out of ``times + 1``, else ``other`` (one_of alone
    favours its simpler branches)."""
    return st.sampled_from([True] * times + [False]).flatmap(lambda first: strategy if first else other)


def almost(strategy, wrong=junk):
    """Mostly ``strategy``; one time in eight, anything at all."""
    return mostly(strategy, wrong)


def _list_of(item, max_size=4):
    return st.lists(almost(item), max_size=max_size)


ADDRESSES = ["127.0.0.1:1", "localhost:65535", "[::1]:9", "10.255.255.1:7"]  # a few: each gets a socket
remote_value = st.tuples(ids, almost(st.sampled_from(ADDRESSES)), some_bytes, small_int).map(list)
value_data = st.one_of(junk, remote_value)
value_triple = st.tuples(almost(some_bytes), almost(kinds), value_data).map(list)  # [oid, kind, data]
result_row = st.tuples(almost(some_bytes), almost(kinds), value_data, almost(small_int),
                       _list_of(some_bytes, 2)).map(list)  # [oid, kind, data, size, contained]
function_triple = st.tuples(almost(st.text(max_size=8)), almost(st.binary(max_size=32)),
                            almost(st.one_of(st.text(max_size=8), st.lists(st.text(max_size=8), max_size=2)))).map(list)

# Fields whose content has a structure of its own, by name.
_NESTED = {
    "deps": st.one_of(_list_of(some_bytes), _list_of(value_triple)),
    "results": _list_of(result_row, 3), "extras": _list_of(result_row, 2), "ready": _list_of(result_row, 2),
    "function": function_triple,
    "resources": resources, "available": resources, "config": resources,
}
for _name in ("nested", "added", "removed", "object_ids", "awaited_tasks", "returned", "contained",
              "task_ids", "pending"):
    _NESTED[_name] = _list_of(some_bytes)


def _typed(name, annotation):
    """A value of the field's declared type (with hostile content)."""
    if name in _NESTED:
        return _NESTED[name]
    if name in ("spec", "create"):
        inner = P.SubmitTask if name == "spec" else P.CreateActor
        return st.one_of(fields_of(inner), st.lists(junk, max_size=16))
    if typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)][0]
        return st.one_of(st.none(), _typed(name, inner))
    if name == "kind" and annotation is int:
        return st.integers(-1, 4)
    if name == "function_id":  # functions are kept for good (valid input): a few ids, not endless ones
        return ids
    if annotation is bytes and (name.endswith("_id") or name in ("owner", "node", "holder", "caller", "key")):
        base = some_bytes
    elif annotation is bytes:
        base = st.binary(max_size=64)
    elif annotation is str and name == "address":
        base = mostly(st.sampled_from(ADDRESSES), st.text(max_size=16), 3)
    elif annotation is str and name in ("key", "name", "namespace"):
        base = st.sampled_from(NAMES)  # what a table keeps (KV keys, actor names): a few
    elif annotation is str:
        base = st.one_of(st.sampled_from(NAMES), st.text(max_size=16))
    elif annotation is int:
        base = small_int
    elif annotation is float:
        base = st.one_of(st.floats(), small_int)
    elif annotation is bool:
        base = st.booleans()
    elif annotation is list:
        base = st.lists(junk, max_size=4)
    elif annotation is dict:
        base = st.dictionaries(st.text(max_size=4), junk, max_size=3)
    else:  # typing.Any
        base = junk
    return base


def typed_fields(cls):
    """The fields of a ``cls`` record, each of its declared type (with hostile content)."""
    hints = typing.get_type_hints(cls)
    return st.tuples(*(_typed(f, hints[f]) for f in cls._fields)).map(list)


def fields_of(cls):
    """The fields of a ``cls`` record, each of its declared type (with hostile content);
    one time in four, one of them is anything at all."""
    typed = typed_fields(cls)
    if not cls._fields:
        return typed

    def spoil(fields, i, value):
        fields[i % len(fields)] = value
        return fields
    spoiled = st.tuples(typed, st.integers(0, len(cls._fields) - 1), junk).map(lambda t: spoil(*t))
    return mostly(typed, spoiled, 3)


def record(types=P.MESSAGE_TYPES):
    """One raw record ``[tag, *fields]`` of one of ``types``: mostly the right arity."""
    n = len(P.MESSAGE_TYPES)
    unknown = st.one_of(st.integers(-3, -1), st.integers(n, n + 20), junk)  # no tag of a type left out

    def build(cls):
        tag = P.MESSAGE_TYPES.index(cls)
        right = fields_of(cls).map(lambda fields: [tag, *fields])
        wrong = st.tuples(st.one_of(st.just(tag), unknown),
                          st.lists(junk, max_size=len(cls._fields) + 2)).map(lambda t: [t[0], *t[1]])
        return mostly(right, wrong)
    return st.sampled_from(types).flatmap(build)


def frame(types=P.MESSAGE_TYPES):
    """One frame of the records protocol: a batch of records, or garbage, or a cut."""
    batch = st.lists(record(types), min_size=1, max_size=3).map(lambda recs: msgpack.packb(recs, use_bin_type=True))
    return mostly(batch, st.one_of(
        st.binary(max_size=64),  # noise
        junk.map(lambda v: msgpack.packb(v, use_bin_type=True)),  # msgpack, not records
        batch.flatmap(lambda f: st.integers(0, max(0, len(f) - 1)).map(lambda n: f[:n]))), 5)  # truncated


# ---------------------------------------------------------------- the plasma store's maps

def _plasma_typed(name, annotation):
    if name == "object_id":
        return some_bytes
    if name == "object_ids":
        return _list_of(some_bytes)
    if name in ("size",):
        return st.one_of(st.integers(-2, 1 << 16), any_int)
    if name in ("timeout", "full_timeout"):
        return st.one_of(st.none(), st.floats(-1, 0.05), st.floats())
    return _typed(name, annotation)


def plasma_message(pid):
    """One store request map (``{"v", "t", fields}``) with fields of their declared types
    (``pid``, what a Connect names, is a live process so the store keeps the client);
    one time in four, one entry is anything at all, missing, or one too many."""
    def build(cls):
        hints = typing.get_type_hints(cls)
        strategies = {"v": st.just(PP.VERSION), "t": st.just(cls.TYPE)}
        for name, _ in cls._FIELDS:
            if name == "pid":
                strategies[name] = st.just(pid)
            elif name == "version":
                strategies[name] = st.just(PP.VERSION)
            else:
                strategies[name] = _plasma_typed(name, hints[name])
        typed = st.fixed_dictionaries(strategies)
        keys = sorted(strategies)

        def spoil(msg, key, value, how):
            if how == "junk":
                msg[key] = value
            elif how == "missing":
                msg.pop(key)
            else:
                msg[f"{key}_"] = value
            return msg
        spoiled = st.tuples(typed, st.sampled_from(keys), junk, st.sampled_from(["junk", "missing", "extra"])).map(
            lambda t: spoil(*t))
        return mostly(typed, spoiled, 3)
    return st.sampled_from(PP.MESSAGE_TYPES).flatmap(build)


def plasma_frame(pid):
    good = plasma_message(pid).map(lambda m: msgpack.packb(m, use_bin_type=True))
    return mostly(good, st.one_of(st.binary(max_size=64), junk.map(lambda v: msgpack.packb(v, use_bin_type=True)),
                                  good.flatmap(lambda f: st.integers(0, max(0, len(f) - 1)).map(lambda n: f[:n]))), 5)


def record_with(cls, **fields):
    """A raw record of ``cls`` whose fields ``fields`` (name -> strategy) are drawn from
    the strategies given, the others of their declared type (hostile content)."""
    hints = typing.get_type_hints(cls)
    tag = P.MESSAGE_TYPES.index(cls)
    return st.tuples(*(fields.get(f, _typed(f, hints[f])) for f in cls._fields)).map(lambda t: [tag, *t])


def frame_of(records):
    """A frame of 1-3 records drawn from ``records``, or (less often) garbage or a cut."""
    batch = st.lists(records, min_size=1, max_size=3).map(lambda recs: msgpack.packb(recs, use_bin_type=True))
    return mostly(batch, st.one_of(st.binary(max_size=64), batch.flatmap(
        lambda f: st.integers(0, max(0, len(f) - 1)).map(lambda n: f[:n]))), 5)
