"""Run the bad-input campaigns against a live cluster and measure what they did: messages
tried, processes alive, memory and tables before and after, what was dropped and logged.
The tests (tests/test_fuzz_*.py) assert on the result; ci/reliability_fuzz.py prints it."""
import os
import re
import time

import numpy as np
import psutil

import actorscoop as asc
import fuzz_campaigns as C
import fuzz_targets as T

WARMUP = 0.1  # share of the examples run before the "before" measurement (caches, first connections)


def tables(info):
    """Sizes of a node's tables that bad input must not grow, and its processes' memory."""
    s = T.node_status(info)
    store = s.get("store", {})
    out = {"objects": s["objects"]["objects"], "tasks": sum(s["tasks"].values()),
           "live_actors": sum(a["state"] != "dead" for a in s["actors"]), "drivers": len(s["drivers"]),
           "store_objects": store.get("num_objects"), "store_clients": store.get("num_clients"),
           "raylet_rss": T.memory(info["pid"])[0], "raylet_uss": T.memory(info["pid"])[1],
           "store_rss": T.memory(store["store_pid"])[0] if store.get("store_pid") else None,
           "store_uss": T.memory(store["store_pid"])[1] if store.get("store_pid") else None,
           "dropped": sum(s["dropped"].values()) + sum(store.get("dropped", {}).values())}
    if "cluster" in s:
        c = s["cluster"]
        out["dropped"] += sum(c["dropped"].values()) + sum(c["transfer"]["refused"].values())
        out["nodes"] = len(c["nodes"])
    return out


def _sessions(target, campaign, n):
    if n > 0:
        campaign(target, n)


def fuzz(name, target, campaign, examples, info):
    """Run ``examples`` sessions of ``campaign`` against ``target`` (on the node ``info``)
    and measure the node before (after a warm-up of 10%) and after."""
    warm = max(1, int(examples * WARMUP))
    start = time.monotonic()
    _sessions(target, campaign, warm)
    before = tables(info)
    _sessions(target, campaign, examples - warm)
    after = tables(info)
    return {"target": name, "sessions": target.count.sessions, "messages": target.count.frames,
            "seconds": round(time.monotonic() - start, 1), "before": before, "after": after,
            "pid": target.pid, "alive": psutil.pid_exists(target.pid)}


def store_socket(info):
    return os.path.join(os.path.dirname(info["raylet_socket"]), "plasma.sock")


def raylet_run(info, examples):
    """Sessions on the Unix socket of the raylet of node ``info``."""
    target = T.RayletTarget(info)
    try:
        return fuzz(target.name, target, C.fuzz_raylet, examples, info)
    finally:
        target.close()


def store_run(info, examples):
    """Sessions on the ipc socket of the store of node ``info``."""
    target = T.StoreTarget(store_socket(info), T.node_status(info)["store"]["store_pid"])
    try:
        return fuzz(target.name, target, C.fuzz_store, examples, info)
    finally:
        target.close()


def head_run(head, creds, examples):
    """Sessions on the head's TCP socket, as a member with the token ``creds``."""
    target = T.HeadTarget(head, creds)
    try:
        return fuzz(target.name, target, C.fuzz_head, examples, head)
    finally:
        target.close()


@asc.remote(resources={"b": 1})
class _Holder:
    """Keeps an object in the member's store while the fuzzer asks for its chunks."""

    def make(self):
        self.ref = asc.put(np.arange(3 << 20, dtype=np.uint8))
        return [self.ref]


def transfer_run(member, creds, examples):
    """Messages to the transfer socket of ``member`` (a node with resource "b"), a real
    object of its store among the ids asked for."""
    holder = _Holder.remote()
    (ref,) = asc.get(holder.make.remote(), timeout=60)
    target = T.TransferTarget(member, creds)
    try:
        return fuzz(target.name, target, lambda t, n: C.fuzz_transfer(t, n, [ref.id]), examples, member)
    finally:
        target.close()
        asc.kill(holder)


@asc.remote
def _where():
    return os.getpid()


@asc.remote(resources={"b": 1})
def _on_member(n):
    return np.ones(n, dtype=np.uint8)


def fresh_work(member=True, timeout=60):
    """After the attack: a task, a put and get and (``member``) a task on the member and an
    object pulled from it. Returns what was checked."""
    assert asc.get(_where.remote(), timeout=timeout) > 0
    big = np.arange(2 << 20, dtype=np.uint8)
    assert np.array_equal(asc.get(asc.put(big), timeout=timeout), big)
    if not member:
        return "a task, and a put and get of 2 MiB: correct"
    assert int(asc.get(_on_member.remote(5 << 20), timeout=timeout).sum()) == 5 << 20
    return "a task, a put and get of 2 MiB, a task on the member and a 5 MiB pull from it: correct"


_DROP_LINE = re.compile(r"(\S+): dropped (.+?): ")  # logger, kind


def log_lines(path):
    """What a node logged: lines in all, "dropped KIND" lines by kind, tracebacks."""
    kinds, total, tracebacks = {}, 0, 0
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            for line in f:
                total += 1
                tracebacks += line.startswith("Traceback")
                m = _DROP_LINE.search(line) if "WARNING" in line else None
                if m:
                    kind = f"{m.group(1)} {m.group(2)}"
                    kinds[kind] = kinds.get(kind, 0) + 1
    return {"lines": total, "tracebacks": tracebacks, "drop_lines_by_kind": kinds}
