"""actorscoop.multiprocessing.Pool behaves like the stdlib's multiprocessing.Pool."""
import multiprocessing

import pytest

from actorscoop.multiprocessing import Pool


def square(x):
    return x * x


def add(a, b):
    return a + b


def boom(x):
    raise ValueError(f"bad {x}")


@pytest.mark.parametrize("pool_class", [Pool, multiprocessing.get_context("fork").Pool],
                         ids=["actorscoop", "stdlib"])
def test_pool_matches_the_stdlib(node, pool_class):
    with pool_class(2) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert list(pool.imap(square, range(5))) == [0, 1, 4, 9, 16]
        assert sorted(pool.imap_unordered(square, range(5))) == [0, 1, 4, 9, 16]
        assert pool.apply(add, (2, 3)) == 5
        r = pool.apply_async(square, (7,))
        assert r.get(timeout=30) == 49 and r.ready() and r.successful()
        assert pool.map_async(square, [1, 2]).get(timeout=30) == [1, 4]
        seen = []
        pool.apply_async(square, (3,), callback=seen.append).wait(30)
        e = pool.apply_async(boom, (1,), error_callback=seen.append)
        with pytest.raises(ValueError, match="bad 1"):
            e.get(timeout=30)
        assert not e.successful()
        with pytest.raises(ValueError, match="bad"):
            pool.map(boom, [1])
    assert 9 in seen


def test_close_join_and_closed_pool(node):
    pool = Pool()
    r = pool.apply_async(square, (4,))
    pool.close()
    with pytest.raises(ValueError, match="not running"):
        pool.apply_async(square, (1,))
    pool.join()
    assert r.get() == 16
    with pytest.raises(ValueError):
        Pool().join()
