"""Run by tests/test_scoop_compat.py: a ValueError raised three tasks deep, met through
every API. The functions live in this main script, so they travel by value (cloudpickle)."""
import json
import sys
import traceback

import joblib

import actorscoop as asc
import actorscoop.joblib
from actorscoop import futures
from actorscoop.exceptions import TaskError
from actorscoop.multiprocessing import Pool


def level3(x):
    raise ValueError("boom", x)  # RAISE-LINE


def level2(x):
    return futures.submit(level3, x).result()


def level1(x):
    return futures.submit(level2, x).result()


@asc.remote
def remote3(x):
    raise ValueError("boom", x)  # REMOTE-RAISE-LINE


@asc.remote
def remote2(x):
    return asc.get(remote3.remote(x))


@asc.remote
def remote1(x):
    return asc.get(remote2.remote(x))


def through_futures():
    return futures.submit(level1, 7).result()


def through_map():
    return list(futures.map(level1, [7]))


def through_executor():
    with futures.Executor() as ex:
        return ex.submit(level1, 7).result()


def through_pool():
    with Pool(2) as pool:
        return pool.apply(level1, (7,))


def through_joblib():
    actorscoop.joblib.register()
    with joblib.parallel_config(backend="actorscoop"):
        return joblib.Parallel(n_jobs=2)(joblib.delayed(level1)(x) for x in [7])


def through_get():
    return asc.get(remote1.remote(7))


def report(fn):
    try:
        fn()
    except ValueError as e:
        text = "".join(traceback.format_exception(e))
        return {"ok": True, "type": type(e).__name__, "is_task_error": isinstance(e, TaskError),
                "args": list(e.args), "str": str(e), "traceback": text,
                "has_cause": getattr(e, "cause", None) is not None,
                "fn": getattr(e, "function_name", None)}
    except BaseException as e:  # noqa: BLE001 - the report says what came instead
        return {"ok": False, "type": type(e).__name__, "str": str(e)}
    return {"ok": False, "type": None}


if __name__ == "__main__":
    ways = {name: globals()[f"through_{name}"] for name in
            ("futures", "map", "executor", "pool", "joblib", "get")}
    print(json.dumps({name: report(fn) for name, fn in ways.items()}))
    sys.stdout.flush()
