"""The runtime's store holds Arrow values as Arrow (issue 16): what asc.put and tasks store
is read by a process that is not actorscoop through the plasma API and pa.ipc, zero-copy;
copy=True always gives writable copies."""
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

import actorscoop as asc

pytestmark = pytest.mark.timeout(120)

N = 200_000  # rows: 1.6 MB a column, past the inline threshold


@asc.remote
def make_table(n):
    import pyarrow as pa
    return pa.table({"x": pa.array(range(n), pa.int64()), "y": pa.array([float(i) for i in range(n)])})


@asc.remote
def column_sum(table):
    import pyarrow.compute as pc
    return pc.sum(table.column("x")).as_py()


@asc.remote
def where_is(table):
    """Whether the table's first column lives in this worker's mapping of the store."""
    from actorscoop._client import _context
    store = _context.current().plasma()
    address = table.column(0).chunk(0).buffers()[1].address
    return store._arena.address <= address < store._arena.address + store.capacity


def _table(n=N):
    return pa.table({"x": pa.array(np.arange(n, dtype=np.int64)), "s": pa.array([str(i % 97) for i in range(n)])})


@pytest.mark.parametrize("copy_", [False, True])
@pytest.mark.parametrize("size", [1000, 1 << 18], ids=["inline", "plasma"])
def test_copy_true_always_gives_writable_arrays(node, size, copy_):
    """Found in review: values under 100 KiB travel inline and skipped the copy."""
    arr = asc.get(asc.put(np.ones(size)), copy=copy_)
    assert arr.flags.writeable is copy_
    if copy_:
        arr[0] = 7.0
        assert asc.get(asc.put(arr))[0] == 7.0


def test_copy_true_of_a_task_result(node):
    @asc.remote
    def small():
        return np.zeros(10)
    arr = asc.get(small.remote(), copy=True)
    arr[1] = 3
    assert arr[1] == 3


def test_object_ref_binary_and_store_socket(node):
    ref = asc.put(1)
    assert ref.binary() == ref.id and len(ref.binary()) == 20
    [info] = [n for n in asc.nodes() if n["Alive"]]
    assert info["ObjectStoreSocketName"].endswith(".sock")


def _read_outside(socket, object_id: bytes, what: str) -> str:
    """Read an object from a fresh interpreter through the plasma API only."""
    code = f"""
import sys, pyarrow as pa
import actorscoop.plasma as plasma
c = plasma.connect({socket!r}, num_retries=5)
[buf] = c.get_buffers([plasma.ObjectID({object_id!r})], timeout_ms=10000)
{what}
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_put_table_is_an_arrow_stream_any_reader_opens(node):
    table = _table()
    ref = asc.put(table)
    socket = asc.nodes()[0]["ObjectStoreSocketName"]
    out = _read_outside(socket, ref.binary(), "t = pa.ipc.open_stream(buf).read_all(); "
                        "print(t.num_rows, t.column('x')[5].as_py(), t.column('s')[100].as_py(), "
                        "t.column('x').chunk(0).buffers()[1].address - buf.address < buf.size)")
    assert out == f"{N} 5 3 True"  # read in place: the column's bytes are inside the object's buffer


def test_get_of_an_arrow_value_is_zero_copy_on_shared_memory(node):
    table = _table()
    ref = asc.put(table)
    back = asc.get(ref)
    assert isinstance(back, pa.Table) and back.equals(table)
    core = node if hasattr(node, "plasma") else None
    from actorscoop._client import _context
    store = _context.current().plasma()
    column = back.column("x").chunk(0).buffers()[1]
    assert store._arena.address <= column.address < store._arena.address + store.capacity
    assert core is None or core


@pytest.mark.parametrize("kind", ["RecordBatch", "Array", "ChunkedArray", "Tensor", "Table"])
def test_arrow_values_come_back_as_what_was_put(node, kind):
    table = _table()
    value = {"RecordBatch": lambda: table.to_batches()[0],
             "Array": lambda: table.column("x").chunk(0),
             "ChunkedArray": lambda: pa.chunked_array([table.column("x").chunk(0)] * 3),
             "Tensor": lambda: pa.Tensor.from_numpy(np.arange(N, dtype=np.float64).reshape(1000, -1)),
             "Table": lambda: table}[kind]()
    back = asc.get(asc.put(value))
    assert type(back) is type(value)
    assert back.equals(value)
    copied = asc.get(asc.put(value), copy=True)
    assert copied.equals(value)


def test_a_tensor_is_read_with_read_tensor(node):
    tensor = pa.Tensor.from_numpy(np.arange(N, dtype=np.float64).reshape(1000, -1))
    ref = asc.put(tensor)
    out = _read_outside(asc.nodes()[0]["ObjectStoreSocketName"], ref.binary(),
                        "t = pa.ipc.read_tensor(pa.BufferReader(buf)); print(t.shape, t.to_numpy()[3, 4])")
    assert out == f"(1000, {N // 1000}) {3 * (N // 1000) + 4}.0"


def test_task_results_and_arguments_that_are_tables(node):
    ref = make_table.remote(N)
    table = asc.get(ref)
    assert table.num_rows == N
    out = _read_outside(asc.nodes()[0]["ObjectStoreSocketName"], ref.binary(),
                        "print(pa.ipc.open_stream(buf).read_all().column('y')[7].as_py())")
    assert out == "7.0"
    assert asc.get(column_sum.remote(ref)) == N * (N - 1) // 2
    assert asc.get(column_sum.remote(table)) == N * (N - 1) // 2
    assert asc.get(where_is.remote(table)) is True  # a large Arrow argument: stored as Arrow, read in place
    assert asc.get(where_is.remote(table=table)) is True


def test_arrow_inside_other_values_keeps_the_pickle_path(node):
    table = _table()
    back = asc.get(asc.put({"t": table, "n": 1}))
    assert back["t"].equals(table) and back["n"] == 1


def test_import_actorscoop_does_not_import_pyarrow():
    code = ("import sys, actorscoop, actorscoop.plasma, actorscoop.plasma._client; "
            "import actorscoop._client._core; print('pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
