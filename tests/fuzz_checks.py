"""Assertions shared by the fuzz tests and ci/reliability_fuzz.py: what "survived bad input"
means, each check able to fail."""
import fuzz_report as R
import fuzz_strategies as FS
from actorscoop.node import _transfer
from actorscoop.transport import _sealed

RSS_GROWTH = 32 << 20  # bytes a process may grow by after the warm-up (a leak grows without bound)
# A node serving chunks keeps up to MAX_IN_FLIGHT sealed chunks in ZeroMQ's queues and as
# many buffers to reuse (node/_transfer.py _Outbox): bounded, but up to ~130 MiB.
SERVING = 2 * _transfer.MAX_IN_FLIGHT * (_transfer.CHUNK + _sealed.TAG)
# Tables a well-formed record may fill, bounded by the fuzzer's pools of ids and names: KV
# values keep objects alive (5 keys x up to 4 ids), a detached actor may live on (6 ids),
# the store keeps sealed objects nobody deleted (12 ids).
ALLOWED_GROWTH = {"objects": 5 * 4, "live_actors": len(FS.IDS) // 2, "store_objects": len(FS.IDS),
                  "tasks": 0, "drivers": 0, "store_clients": 0, "nodes": 4}


def problems(result, log_path=None, elapsed=None):
    """What is wrong with one target's run (an empty list if nothing)."""
    out = []
    if not result["alive"]:
        out.append(f"{result['target']}: process {result['pid']} died")
    before, after = result["before"], result["after"]
    for key, allowed in ALLOWED_GROWTH.items():
        if key in before and after[key] is not None and after[key] > before[key] + allowed:
            out.append(f"{result['target']}: {key} grew from {before[key]} to {after[key]}")
    for key in ("raylet_rss", "store_rss"):
        allowed = RSS_GROWTH + (SERVING if key == "raylet_rss" and "transfer" in result["target"] else 0)
        if before.get(key) and after[key] - before[key] > allowed:
            out.append(f"{result['target']}: {key} grew by {(after[key] - before[key]) >> 20} MiB")
    if log_path is not None:
        logs = R.log_lines(log_path)
        most = 1 + int(elapsed / 60)  # once per kind a minute, from the first one
        for kind, n in logs["drop_lines_by_kind"].items():
            if n > most:
                out.append(f"{log_path}: {n} log lines for dropped '{kind}' in {elapsed:.0f} s")
    return out
