"""actorscoop.shared: constants set once, read from any task; redefinition raises."""
import uuid

import numpy as np
import pytest

from actorscoop import futures, shared


def name(prefix="c"):
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def read(key, timeout=None):
    return shared.getConst(key, timeout=timeout)


def scaled(x, key):
    return x * shared.getConst(key)


def array_facts(key):
    a = shared.getConst(key)
    return float(a.sum()), a.flags.writeable, type(a).__name__


def define_in_task(key, value):
    shared.setConst(**{key: value})
    return True


def test_public_names():
    assert shared.__all__ == ["setConst", "getConst"]


def test_constants_reach_tasks(node):
    k = name()
    shared.setConst(**{k: 3})
    assert shared.getConst(k) == 3
    assert list(futures.map(scaled, range(5), [k] * 5)) == [0, 3, 6, 9, 12]


def test_several_constants_and_callables(node):
    a, b = name(), name()
    shared.setConst(**{a: {"x": [1, 2]}, b: lambda v: v + 1})
    assert futures.submit(read, a).result(60) == {"x": [1, 2]}
    assert futures.submit(lambda: shared.getConst(b)(41)).result(60) == 42


def test_redefinition_raises_as_in_scoop(node):
    k = name()
    shared.setConst(**{k: 1})
    with pytest.raises(TypeError, match="already exists"):
        shared.setConst(**{k: 2})
    with pytest.raises(TypeError, match="already exists"):
        shared.setConst(**{k: 1})  # even with the same value
    assert shared.getConst(k) == 1
    # ... and from inside a task
    with pytest.raises(TypeError, match="already exists"):
        futures.submit(define_in_task, k, 5).result(60)


def test_large_constant_goes_through_the_object_store(node):
    k = name()
    arr = np.arange(500_000, dtype=np.float64)
    shared.setConst(**{k: arr})
    total, writeable, kind = futures.submit(array_facts, k).result(60)
    assert total == float(arr.sum()) and kind == "ndarray"
    assert writeable is False  # a zero-copy view of shared memory


def test_missing_constant_and_timeout(node):
    assert shared.getConst(name("missing")) is None
    assert shared.getConst(name("missing"), timeout=0.2) is None


def test_get_waits_for_a_constant_defined_later(node):
    k = name()
    fut = futures.submit(read, k, 60)
    shared.setConst(**{k: "late"})
    assert fut.result(60) == "late"


def test_constant_defined_in_a_task_is_seen_by_the_driver(node):
    k = name()
    assert futures.submit(define_in_task, k, [1, 2, 3]).result(60)
    assert shared.getConst(k, timeout=10) == [1, 2, 3]
