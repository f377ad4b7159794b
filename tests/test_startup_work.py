"""While a node starts, only its start uses the CPUs (issue 18): the store process never
imports numpy, and the fork server imports pyarrow only once nobody asked it for a worker
for a while (then later workers start with it). What the node's processes loaded is read
from their memory maps: the shared libraries of numpy and pyarrow."""
import psutil
import pytest

from conftest import wait_for


def _descendants_by_module(module):
    return [p for p in psutil.Process().children(recursive=True)
            if module in " ".join(p.cmdline())]


def _loaded(proc, library):
    return any(library in (m.path or "") for m in proc.memory_maps(grouped=True))


@pytest.mark.timeout(120)
def test_the_store_never_imports_numpy_and_the_zygote_imports_pyarrow_late(fresh_node):
    asc = fresh_node(num_cpus=1)

    @asc.remote
    def one():
        return 1

    assert asc.get(one.remote(), timeout=60) == 1
    stores = _descendants_by_module("actorscoop.plasma")
    wait_for(lambda: asc._driver._api._context.current().plasma() is not None, 30,
             what="the store to serve")
    assert len(stores) == 1
    ref = asc.put(bytes(1 << 20))  # the store works, through its arena
    assert len(asc.get(ref, timeout=60)) == 1 << 20
    assert not _loaded(stores[0], "_multiarray_umath"), "the store process imported numpy"
    zygotes = [p for p in _descendants_by_module("actorscoop.node.worker._zygote")
               if p.parent() is not None and "_zygote" not in " ".join(p.parent().cmdline())]
    assert len(zygotes) == 1
    wait_for(lambda: _loaded(zygotes[0], "libarrow"), 60,
             what="the fork server to import pyarrow once idle")
