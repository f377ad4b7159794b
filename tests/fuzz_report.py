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
import fuzz_peers as P
import fuzz_targets as T
from actorscoop._client import _context

WARMUP = 0.1  # share of the examples run before the "before" measurement (caches, first connections)


def status_with_store(info, store_wait=30.0):
    """The node's status once its raylet reports its store (``init()`` and ``start`` do not
    wait for the store: wait up to ``store_wait`` s), so that before and after measure the
    same things and the store's pid is known."""
    deadline = time.monotonic() + store_wait
    s = T.node_status(info)
    while s.get("store", {}).get("store_pid") is None and time.monotonic() < deadline:
        time.sleep(0.05)
        s = T.node_status(info)
    return s


def tables(info, store_wait=30.0):
    """Sizes of a node's tables that bad input must not grow, and its processes' memory."""
    s = status_with_store(info, store_wait)
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


def fuzz(name, target, campaign, examples, info, measure=None):
    """Run ``examples`` sessions of ``campaign`` against ``target`` (on the node ``info``)
    and measure the node (or ``measure()``: what the target's process keeps) before (after
    a warm-up of 10%) and after."""
    measure = measure or (lambda: tables(info))
    warm = max(1, int(examples * WARMUP))
    start = time.monotonic()
    _sessions(target, campaign, warm)
    before = measure()
    _sessions(target, campaign, examples - warm)
    after = measure()
    alive = target.alive() if hasattr(target, "alive") else psutil.pid_exists(target.pid)
    return {"target": name, "sessions": target.count.sessions, "messages": target.count.frames,
            "seconds": round(time.monotonic() - start, 1), "before": before, "after": after,
            "pid": target.pid, "alive": alive}


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
    target = T.StoreTarget(store_socket(info), status_with_store(info)["store"]["store_pid"])
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


def driver_run(address, log_path, examples):
    """Sessions on the result socket of a driver process of its own, connected to the node
    serving ``address`` (its log: ``log_path``). Returns (result, what fresh work checked)."""
    target = P.DriverTarget(address, log_path)
    try:
        result = fuzz(target.name, target, C.fuzz_driver, examples, None, target.tables)
        return result, target.fresh_work() if result["alive"] else "not checked: the driver died"
    finally:
        target.close()


@asc.remote
class _Actor:
    """The actor whose direct-call socket the fuzzer attacks."""

    def ping(self):
        return None

    def tables(self):
        core = _context.current()
        server = core._direct_server
        rss, uss = T.memory(os.getpid())
        return {"pid": os.getpid(), "sockets": os.path.dirname(core.plasma_socket),
                "logs": os.path.join(core.session_dir, "logs"), "peers": len(server.peers),
                "origin": len(server.origin), "blobs": len(core._blobs), "functions": len(core._functions),
                "values": len(core._values), "queue": len(core._queue), "actor_rss": rss, "actor_uss": uss,
                "dropped": core.drops.total()}


def actor_run(examples):
    """Sessions on the direct-call socket of an actor of this driver."""
    actor = _Actor.remote()
    first = asc.get(actor.tables.remote(), timeout=60)
    target = P.ActorTarget(first["sockets"], actor._actor_id, first["pid"])
    try:
        result = fuzz(target.name, target, C.fuzz_actor, examples, None,
                      lambda: asc.get(actor.tables.remote(), timeout=T.SYNC_TIMEOUT))
        assert asc.get(actor.ping.remote(), timeout=60) is None  # a call the usual way still works
        result["log"] = os.path.join(first["logs"], f"worker-{target.pid}.log")  # the actor's own
        return result
    finally:
        asc.kill(actor)


def raylet_stand_in_run(kind, log_path, examples):
    """Frames to a process this process starts and stands in the raylet of: ``kind``
    "worker" or "driver" (its log: ``log_path``)."""
    target, campaign = {"worker": (P.WorkerTarget, C.fuzz_worker),
                        "driver": (P.DriverRayletTarget, C.fuzz_driver_raylet)}[kind]
    target = target(log_path)
    try:
        return fuzz(target.name, target, campaign, examples, None, target.tables)
    finally:
        target.close()


def member_run(head, examples):
    """Messages from the fake head ``head`` (fuzz_peers.FakeHead) to its member."""
    return fuzz(head.name, head, C.fuzz_member, examples, head.info)


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
                tracebacks += "Traceback (most recent call last)" in line  # a worker's lines have a prefix
                m = _DROP_LINE.search(line) if "WARNING" in line else None
                if m:
                    kind = f"{m.group(1)} {m.group(2)}"
                    kinds[kind] = kinds.get(kind, 0) + 1
    return {"lines": total, "tracebacks": tracebacks, "drop_lines_by_kind": kinds}
