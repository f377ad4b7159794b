"""Arrow values stored as Arrow: a Table, RecordBatch, Array or ChunkedArray becomes an Arrow
IPC stream written straight into the object's data part, a Tensor one tensor message; the
runtime's header (in the metadata part) says which. Any Arrow reader opens the data part
(``pa.ipc.open_stream(buf)``, ``pa.ipc.read_tensor``), zero-copy.

The only module of the runtime's store client that imports pyarrow (it costs ~70 ms): it
is loaded when a process first puts or gets an Arrow value, when pyarrow is there already.
"""

from __future__ import annotations

import pyarrow as pa

from . import _layout


def _stream_parts(value):
    """(arrow_type, schema, batches) of a value stored as an IPC stream."""
    if isinstance(value, pa.Table):
        return "Table", value.schema, value.to_batches()
    if isinstance(value, pa.RecordBatch):
        return "RecordBatch", value.schema, [value]
    if isinstance(value, pa.ChunkedArray):
        table = pa.Table.from_arrays([value], names=[""])
        return "ChunkedArray", table.schema, table.to_batches()
    if isinstance(value, pa.Array):
        batch = pa.RecordBatch.from_arrays([value], names=[""])
        return "Array", batch.schema, [batch]
    raise TypeError(f"{type(value).__name__} is not stored as Arrow IPC")


def _write_stream(sink, schema, batches) -> None:
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


def put(client, object_id: bytes, value) -> int:
    """Create, write and seal ``value`` as Arrow IPC; return the block's size in bytes."""
    if isinstance(value, pa.Tensor):
        kind, arrow_type, size = _layout.ARROW_TENSOR, "Tensor", pa.ipc.get_tensor_size(value)

        def write(sink):
            pa.ipc.write_tensor(value, sink)
    else:
        kind = _layout.ARROW_STREAM
        arrow_type, schema, batches = _stream_parts(value)
        mock = pa.MockOutputStream()  # the stream's size, without writing it
        _write_stream(mock, schema, batches)
        size = mock.size()

        def write(sink):
            _write_stream(sink, schema, batches)
    metadata = _layout.arrow_header(kind, arrow_type, size)
    data = client.create(object_id, size, metadata)
    try:
        sink = pa.FixedSizeBufferWriter(pa.py_buffer(data))
        if size >= _layout.PARALLEL_COPY_MIN:
            sink.set_memcopy_threads(_layout.copy_threads())
        write(sink)
        sink.close()
    except BaseException:
        client._abort_quietly(object_id)
        raise
    client.seal(object_id)
    return _layout.block_size(size, len(metadata))


def load(header: _layout.Header, data: memoryview, copy: bool = False):
    """The value an Arrow object holds, over ``data`` (zero-copy: it keeps the object pinned)
    or, with ``copy=True``, over a private copy."""
    buf = pa.py_buffer(bytes(data) if copy else data)
    if header.kind == _layout.ARROW_TENSOR:
        return pa.ipc.read_tensor(pa.BufferReader(buf))
    reader = pa.ipc.open_stream(buf)
    if header.arrow_type == "RecordBatch":
        return reader.read_next_batch()
    if header.arrow_type == "Array":
        return reader.read_next_batch().column(0)
    table = reader.read_all()
    return table.column(0) if header.arrow_type == "ChunkedArray" else table
