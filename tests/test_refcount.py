"""Objects live exactly as long as something refers to them, then every copy is freed."""
import gc

import numpy as np

import actorscoop as asc
from conftest import wait_for


def objects():
    return asc._driver._api.status()["objects"]["objects"]


def store_used():
    # The raylet connects to its store in the background (init() does not wait for it):
    # until then its status has no store figures.
    store = wait_for(lambda: asc._driver._api.status()["store"], 30, what="the raylet's store link")
    return store["used"]


@asc.remote
def make_big(n):
    return np.ones(n)


@asc.remote
def wrap(x):
    return [x]


def test_dropping_refs_frees_inline_and_shared_memory_objects(node):
    wait_for(lambda: objects() == 0, 10, what="a clean object table")
    refs = [asc.put(i) for i in range(50)] + [make_big.remote(300_000) for _ in range(3)]
    big = asc.put(np.arange(500_000))
    assert asc.get(refs[-1]).sum() == 300_000
    assert objects() == 54 and store_used() > 3 * 2_400_000
    del refs, big
    gc.collect()
    wait_for(lambda: objects() == 0, 10, what="objects to be freed")
    wait_for(lambda: store_used() == 0, 10, what="shared memory to be freed")


def test_nested_refs_keep_their_objects_alive(node):
    inner = asc.put("inner value")
    outer = wrap.remote([inner])  # a list holding a ref, inside the returned list
    del inner
    gc.collect()
    (lst,) = asc.get(outer)
    assert asc.get(lst[0]) == "inner value"
    del lst, outer
    gc.collect()
    wait_for(lambda: objects() == 0, 10, what="nested objects to be freed")


def test_pending_task_pins_its_arguments(node):
    @asc.remote
    def slow_read(x):
        import time
        time.sleep(0.5)
        return x

    arg = asc.put(list(range(1000)))
    ref = slow_read.remote(arg)
    del arg
    gc.collect()
    assert asc.get(ref) == list(range(1000))


def test_a_collection_inside_the_refcount_lock_does_not_deadlock():
    """ObjectRef.__del__ (decr) can run on the thread that holds the refcount lock, when an
    allocation there starts a collection; with a plain Lock that thread waited for itself
    (seen in the suite: a driver stuck in frame() -> gc -> __del__ -> decr)."""
    import gc
    import threading
    from actorscoop._client import _refcount

    class Ref:
        def __init__(self, oid):
            self.oid, self.cycle = oid, self  # collected only by the cycle collector
            _refcount.incr(oid)

        def __del__(self):
            _refcount.decr(self.oid)

    def collect_while_locked():
        Ref(b"\x01" * 20)
        with _refcount._lock:
            gc.collect()

    t = threading.Thread(target=collect_while_locked, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "decr from a collection deadlocked on the refcount lock"
    _refcount.discard_removal(b"\x01" * 20)
