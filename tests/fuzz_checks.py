"""Assertions shared by the fuzz tests and ci/reliability_fuzz.py: what "survived bad input"
means, each check able to fail."""
import fuzz_report as R
import fuzz_strategies as FS
from actorscoop._driver import _connection as _driver
from actorscoop.node.cluster import _transfer
from actorscoop.transport import _sealed

# Private memory (USS) a process may gain after the warm-up: a leak grows without bound; a
# large but valid request (a task with 65,536 return values) leaves a high-water mark.
RSS_GROWTH = 32 << 20
# A node serving chunks keeps up to MAX_IN_FLIGHT sealed chunks in ZeroMQ's queues and as
# many buffers to reuse (node/cluster/_transfer.py _Outbox): bounded, but up to ~130 MiB.
SERVING = 2 * _transfer.MAX_IN_FLIGHT * (_transfer.CHUNK + _sealed.TAG)
# What valid records may keep, bounded by the fuzzer's pools of ids and names (not by how
# many messages it sends): KV values keep objects alive (5 keys x up to 4 ids); an actor
# another node placed here waits for its owner (12 ids), pinning its arguments (up to 8)
# and expecting its result; the store keeps sealed objects nobody deleted (12 ids); the
# head keeps a row per node id that joined (12 + 4 ids); a spilled task may still be
# running when the run ends (1). Every worker is a client of its node's store (it connects
# when it starts): the fuzzer's tasks may start workers, up to 4 a CPU (the nodes have 1).
ALLOWED_GROWTH = {"objects": 5 * 4 + len(FS.IDS) * 9, "live_actors": len(FS.IDS), "store_objects": len(FS.IDS),
                  "tasks": 1, "drivers": 0, "store_clients": 4, "nodes": len(FS.IDS) + 4,
                  # a driver's and an actor's own tables (fuzz_peers.py); a connection whose
                  # hang-up was not read yet when the run ends (1 each)
                  # (and the warnings a driver remembers, up to _driver._WARNED; progress bars: 3 ids, of 3 tasks)
                  "values": 0, "peers": 1, "calls": 0, "futures": 0, "warned": _driver._WARNED, "waiters": 0,
                  "owned": 0, "output": 3 + 3,
                  "origin": 0, "blobs": 0, "functions": 0, "queue": 0}


def problems(result, log_path=None, elapsed=None):
    """What is wrong with one target's run (an empty list if nothing). The log checked is
    the target's own (``result["log"]``, an actor's) or ``log_path``."""
    out = []
    log_path = result.get("log", log_path)
    if not result["alive"]:
        out.append(f"{result['target']}: process {result['pid']} died")
    before, after = result["before"], result["after"]
    for key, allowed in ALLOWED_GROWTH.items():
        if key in before and after[key] is not None and after[key] > before[key] + allowed:
            out.append(f"{result['target']}: {key} grew from {before[key]} to {after[key]}")
    for key in (k for k in before if k.endswith("_uss")):
        allowed = RSS_GROWTH + (SERVING if key == "raylet_uss" and "transfer" in result["target"] else 0)
        if before.get(key) and after[key] - before[key] > allowed:
            out.append(f"{result['target']}: {key} grew by {(after[key] - before[key]) >> 20} MiB")
    if log_path is not None:
        logs = R.log_lines(log_path)
        most = 1 + int(elapsed / 60)  # once per kind a minute, from the first one
        if logs["tracebacks"]:  # a process (a worker too: its lines reach the node's log) broke
            out.append(f"{log_path}: {logs['tracebacks']} traceback(s)")
        for kind, n in logs["drop_lines_by_kind"].items():
            if n > most:
                out.append(f"{log_path}: {n} log lines for dropped '{kind}' in {elapsed:.0f} s")
    return out
