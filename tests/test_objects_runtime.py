"""The object store through the runtime: zero-copy reads, copies on request, spilling."""
import dataclasses
import gc

import numpy as np
import pyarrow as pa
import pytest

import actorscoop as asc


def _arena_contains(arr):
    """True when the array's memory lies in a shared-memory or spill mapping of this process."""
    addr = arr.__array_interface__["data"][0]
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and "actorscoop-plasma" in parts[5]:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if lo <= addr < hi:
                    return True
    return False


@dataclasses.dataclass
class Holder:
    name: str
    data: np.ndarray


def test_numpy_views_any_dtype_and_order_in_containers(node):
    arrays = {
        "f64": np.random.rand(300_000),
        "i8": np.arange(2_000_000, dtype=np.int8).reshape(1000, 2000),
        "fortran": np.asfortranarray(np.random.rand(500, 400)),
        "complex": (np.arange(100_000) * 1j).astype(np.complex128),
        "bool": np.random.rand(1_000_000) > 0.5,
    }
    value = {"list": list(arrays.values()), "holder": Holder("h", arrays["f64"])}
    got = asc.get(asc.put(value))
    for original, back in zip(arrays.values(), got["list"]):
        assert back.dtype == original.dtype and back.shape == original.shape
        assert np.array_equal(back, original)
        assert back.flags.f_contiguous == original.flags.f_contiguous
        assert not back.flags.writeable and _arena_contains(back)
    assert np.array_equal(got["holder"].data, arrays["f64"])
    with pytest.raises(ValueError, match="read-only"):
        got["list"][0][0] = 1.0
    copy = asc.get(asc.put(arrays["f64"]), copy=True)
    copy[0] = 42.0
    assert copy.flags.writeable and not _arena_contains(copy)


def test_arrow_tables_come_back_zero_copy(node):
    table = pa.table({"a": np.arange(500_000), "b": np.random.rand(500_000)})
    back = asc.get(asc.put(table))
    assert back.equals(table)
    col = back.column("b").chunk(0)
    addr = col.buffers()[1].address
    arr = np.frombuffer(col.buffers()[1], dtype=np.float64)
    assert arr.__array_interface__["data"][0] == addr and _arena_contains(arr)

    @asc.remote
    def total(t):
        return float(pa.compute.sum(t.column("b")).as_py())

    assert abs(asc.get(total.remote(back)) - float(table.column("b").to_numpy().sum())) < 1e-6


def test_tasks_read_the_same_pages(node):
    a = np.random.rand(2_000_000)
    ref = asc.put(a)

    @asc.remote
    def address_and_sum(x):
        return _arena_contains(x), float(x.sum())

    results = asc.get([address_and_sum.remote(ref) for _ in range(4)])
    assert all(inside for inside, _ in results)
    assert all(abs(s - a.sum()) < 1e-6 for _, s in results)
