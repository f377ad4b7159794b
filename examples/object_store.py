"""The object store with numpy: put a large array once, read it in many tasks without
copying.

``asc.put(array)`` writes the array into the node's shared memory once; each task that
gets its ref receives a read-only numpy view of that same memory (zero-copy), so eight
tasks reading a 64 MiB array do not make eight copies. A task's large result comes back
the same way.

    python examples/object_store.py [megabytes]
"""
import sys

import numpy as np

import actorscoop as asc


@asc.remote
def column_means(block, start, stop):
    # ``block`` is a read-only view of shared memory: reading is free, writing raises.
    return block[:, start:stop].mean(axis=0), block.flags.writeable


@asc.remote
def scaled(block, factor):
    return block * factor  # a new array: it goes back through the store


def main(megabytes=64):
    rows = megabytes * 2**20 // (8 * 256)
    data = np.random.default_rng(0).random((rows, 256))
    ref = asc.put(data)  # stored once
    parts = asc.get([column_means.remote(ref, i, i + 32) for i in range(0, 256, 32)])
    means = np.concatenate([m for m, _ in parts])
    assert np.allclose(means, data.mean(axis=0)) and not any(w for _, w in parts)
    doubled = asc.get(scaled.remote(ref, 2.0))
    print(f"{data.nbytes / 2**20:.0f} MiB array: 8 tasks read it in place; column means "
          f"match; doubled sum ratio {doubled.sum() / data.sum():.1f}")
    return means


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
