"""SCOOP behaviour of actorscoop.futures: map's laziness and order, zip of iterables,
generators, errors inside map, nested submits (subtasks) and waiting inside tasks,
mapReduce/mapScan values, the public names."""
import concurrent.futures
import itertools
import operator
import uuid

import pytest

from actorscoop._client import _context
from actorscoop import futures


class Gate:
    def __init__(self):
        self.key = "test-gate/" + uuid.uuid4().hex

    def open(self):
        _context.current().kv_put(self.key, b"1")

    def wait(self, timeout=60):
        _context.current().kv_get(self.key, wait=True, timeout=timeout)


def square(x):
    return x * x


def gated(x, gate):
    if gate is not None:
        gate.wait()
    return x


def fail_at(x, bad):
    if x == bad:
        raise KeyError(x)
    return x


def fib(n):
    if n < 2:
        return n
    a = futures.submit(fib, n - 1)
    b = futures.submit(fib, n - 2)
    return a.result() + b.result()


def tree_sum(depth):
    if depth == 0:
        return 1
    return sum(futures.map(tree_sum, [depth - 1] * 3, chunksize=1))


def wait_inside_task(n):
    fs = [futures.submit(square, i) for i in range(n)]
    done, not_done = futures.wait(fs, timeout=60)
    assert not not_done
    first = futures.wait(fs, return_when=futures.FIRST_COMPLETED).done
    assert first
    ordered = [f.result() for f in futures.as_completed(fs, timeout=60)]
    return sorted(ordered), sorted(futures.map_as_completed(square, range(n)))


def fail_inside_task():
    fs = [futures.submit(fail_at, i, 2) for i in range(4)]
    done, _ = futures.wait(fs, timeout=60, return_when=futures.FIRST_EXCEPTION)
    return any(f.exception() is not None for f in done)


def test_public_names():
    assert set(futures.__all__) == {
        "submit", "map", "map_as_completed", "as_completed", "wait", "mapReduce", "mapScan",
        "shutdown", "Executor", "Future", "FIRST_COMPLETED", "FIRST_EXCEPTION",
        "ALL_COMPLETED"}
    assert futures.FIRST_COMPLETED == concurrent.futures.FIRST_COMPLETED


# ---------------------------------------------------------------------- map
def test_map_equals_builtin_map(node):
    assert list(futures.map(square, range(1000))) == [x * x for x in range(1000)]
    assert list(futures.map(square, [])) == []
    assert list(futures.map(square, range(7), chunksize=3)) == [x * x for x in range(7)]


def test_map_zips_and_stops_at_the_shortest(node):
    assert list(futures.map(pow, [1, 2, 3, 4], [2, 2, 2])) == [1, 4, 9]
    assert list(futures.map(operator.add, "abc", "xyzw")) == ["ax", "by", "cz"]


def test_map_takes_generators(node):
    gen = (i for i in range(50))
    assert list(futures.map(pow, gen, itertools.repeat(2))) == [x * x for x in range(50)]
    endless = itertools.count()
    assert list(itertools.islice(futures.map(square, endless), 5)) == [0, 1, 4, 9, 16]


def test_map_is_lazy_and_ordered(node):
    gate = Gate()
    it = futures.map(gated, [0, 1, 2, 3], [None, None, gate, None], chunksize=1)
    assert iter(it) is it
    assert next(it) == 0 and next(it) == 1  # item 2 is still blocked
    gate.open()
    assert list(it) == [2, 3]


def test_map_as_completed_yields_ready_results_first(node):
    gate = Gate()
    it = futures.map_as_completed(gated, ["slow", "fast"], [gate, None], chunksize=1)
    assert next(it) == "fast"
    gate.open()
    assert list(it) == ["slow"]


def test_map_raises_after_the_values_before_the_failure(node):
    it = futures.map(fail_at, range(10), [4] * 10, chunksize=3)
    assert [next(it) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(KeyError) as info:
        next(it)
    assert "fail_at" in info.value.remote_traceback
    with pytest.raises(StopIteration):
        next(it)


def test_map_with_lambda_and_closure(node):
    offset = 100
    assert list(futures.map(lambda x: x + offset, range(5))) == [100, 101, 102, 103, 104]


def test_executor_map_reads_input_as_it_goes(node):
    read = []

    def source():
        for i in range(100):
            read.append(i)
            yield i

    with futures.Executor() as ex:
        it = ex.map(square, source(), chunksize=1, buffersize=4)
        assert len(read) <= 5
        assert list(it) == [x * x for x in range(100)]


def test_bad_chunksize(node):
    with pytest.raises(ValueError):
        futures.map(square, range(3), chunksize=0)
    with pytest.raises(TypeError):
        futures.map(square)


# ---------------------------------------------------------------------- subtasks
def test_nested_submits(node):
    assert futures.submit(fib, 10).result(120) == 55


def test_nested_maps(node):
    assert futures.submit(tree_sum, 3).result(120) == 27


def test_wait_and_as_completed_inside_a_task(node):
    expected = [i * i for i in range(6)]
    assert futures.submit(wait_inside_task, 6).result(120) == (expected, expected)
    assert futures.submit(fail_inside_task).result(120) is True


# ---------------------------------------------------------------------- mapReduce / mapScan
def test_map_reduce(node):
    assert futures.mapReduce(square, operator.add, range(100)) == sum(x * x for x in range(100))
    # associative but not commutative: order is kept
    assert futures.mapReduce(str, operator.add, range(50), chunksize=7) == \
        "".join(str(i) for i in range(50))
    assert futures.mapReduce(operator.mul, operator.add, [1, 2, 3], [4, 5, 6]) == 32
    assert futures.mapReduce(square, operator.add, [3]) == 9
    with pytest.raises(TypeError):
        futures.mapReduce(square, operator.add, [])


def test_map_reduce_propagates_errors(node):
    with pytest.raises(KeyError):
        futures.mapReduce(fail_at, operator.add, range(10), [5] * 10)


def test_map_scan_is_a_prefix_reduction(node):
    assert futures.mapScan(square, operator.add, range(10)) == \
        list(itertools.accumulate(x * x for x in range(10)))
    assert futures.mapScan(str, operator.add, range(12), chunksize=5) == \
        list(itertools.accumulate(str(i) for i in range(12)))
    assert futures.mapScan(square, operator.add, []) == []


# ---------------------------------------------------------------------- scripts
SCRIPT = '''
import json
import sys
from actorscoop import futures

# Like DEAP's creator.create: a class made at import time and stored in another
# (importable) module, so it pickles by reference and a fresh worker lacks it.
Point = type("Point", (), {"__module__": "json"})
json.Point = Point


def norm(p):
    return p.x * p.x + p.y * p.y


if __name__ == "__main__":
    points = []
    for i in range(10):
        p = Point()
        p.x, p.y = i, 1
        points.append(p)
    print("RESULT", list(futures.map(norm, points)), sys.argv[1:])
'''


@pytest.mark.parametrize("launcher", [[], ["-m", "actorscoop", "-n", "2"]],
                         ids=["python-script", "python-m-actorscoop"])
def test_script_with_classes_made_at_import(tmp_path, launcher):
    import subprocess
    import sys
    script = tmp_path / "points.py"
    script.write_text(SCRIPT)
    env = dict(__import__("os").environ, ACTORSCOOP_NUM_CPUS="2")
    out = subprocess.run([sys.executable, *launcher, str(script), "a1"], capture_output=True,
                         text=True, timeout=100, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = [i * i + 1 for i in range(10)]
    assert f"RESULT {expected} ['a1']" in out.stdout
