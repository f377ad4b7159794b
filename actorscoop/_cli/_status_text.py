"""`actorscoop status` as text: what a node (or, from the head, the whole cluster) runs,
readable in a terminal. Pure formatting of a node's ``what="status"`` report and its
``what="tasks"`` answer (see node/raylet/_status.py)."""
import time

MAX_FUNCTIONS = 20
MAX_ACTORS = 10
MAX_DEMANDS = 10


def format_status(status: dict, tasks: dict = None) -> str:
    """The text of one node's report; from a head, the whole cluster's."""
    cluster = status.get("cluster") or {}
    lines = [_title(status, cluster), ""]
    lines += _nodes(status, cluster)
    lines += _workers(status.get("workers") or [])
    lines.append("")
    if tasks is not None:
        lines += _tasks(tasks)
        lines += _actors(tasks["actors"])
        lines += _demands(tasks["infeasible"])
        lines += _last_failure(tasks["failures"])
    else:  # a node too old to answer "tasks"
        lines += ["Tasks: " + ", ".join(f"{k} {v}" for k, v in status["tasks"].items())]
        lines += _demands([{"name": i["name"], "resources": i["resources"], "count": 1,
                            "reason": "no node has these resources"} for i in status["infeasible"]])
    lines += _groups(status.get("placement_groups"))
    lines += _monitor(status.get("memory_monitor"))
    lines += _dropped(status)
    drivers = status.get("drivers") or []
    lines.append(f"Drivers connected to this node: {len(drivers)}"
                 + (" (" + ", ".join(f"pid {d['pid']}" for d in drivers[:5]) + ")" if drivers else ""))
    return "\n".join(lines)


def _title(status, cluster):
    node = f"node {status['node_id'][:12]}, pid {status['pid']}"
    if cluster.get("head"):
        alive = sum(1 for n in cluster.get("nodes", []) if n.get("alive"))
        return (f"Cluster at {cluster['address']}: {alive} node{'s' if alive != 1 else ''} alive "
                f"(head {node})")
    if cluster:
        lost = " (the head is unreachable)" if cluster.get("head_lost") else ""
        return (f"Node {status['node_id'][:12]} (pid {status['pid']}), member of the cluster at "
                f"{cluster['address']}{lost}: the head's `actorscoop status` shows the cluster")
    return f"Node {status['node_id'][:12]} (pid {status['pid']}), on its own (not in a cluster)"


def _nodes(status, cluster):
    rows = []
    if cluster.get("head") and cluster.get("nodes"):
        for n in cluster["nodes"]:
            state = ("head" if n.get("head") else "alive") if n.get("alive") else "DEAD"
            rows.append([n["node_id"][:12], n.get("host", ""), state,
                         _used(n.get("resources") or {}, n.get("available") or {}, "CPU"),
                         str(n.get("workers", "?")), _memory(n.get("memory")), _store(n.get("store"))])
        used = _summed(cluster["nodes"])
    else:
        tot, av = status["resources_total"], status["resources_available"]
        rows.append([status["node_id"][:12], "", "alive", _used(tot, av, "CPU"),
                     str(len(status.get("workers", []))), _memory(status.get("memory")),
                     _store(status.get("store"))])
        used = (tot, av)
    out = ["Nodes"] + _table(["NODE", "HOST", "STATE", "CPU", "WORKERS", "MEMORY FREE", "OBJECT STORE"], rows)
    tot, av = used
    out.append("Resources used: " + ", ".join(_used(tot, av, k, named=True) for k in sorted(tot)))
    gpus = status.get("gpus")
    if gpus:
        out.append("GPUs of this node (CUDA_VISIBLE_DEVICES ids): " + ", ".join(
            f"{g['id']} " + ("free" if not g["used"] else f"{g['used']:.0%} in use") for g in gpus))
    return out


def _groups(groups):
    """Placement groups: how many are made, and each one waiting with why."""
    if not groups:
        return []
    live = [g for g in groups if g["state"] != "REMOVED"]
    made = sum(1 for g in live if g["state"] == "CREATED")
    out = [f"Placement groups: {made} created, {len(live) - made} waiting"]
    for g in [g for g in live if g["state"] != "CREATED"][:MAX_DEMANDS]:
        label = g["name"] or g["placement_group_id"][:12]
        out.append(f"  {label} ({g['strategy']}, {len(g['bundles'])} bundles) {g['state']}: {g['reason']}")
    return out + [""]


def _workers(workers):
    """This node's workers by state; those blocked in a nested get, with the tasks each
    holds paused (a stuck tree of nested tasks shows here)."""
    if not workers:
        return []
    by_state = {}
    for w in workers:
        by_state[w.get("state")] = by_state.get(w.get("state"), 0) + 1
    blocked = [w for w in workers if w.get("state") == "blocked"]
    paused = sum(w.get("paused", 0) for w in workers)
    line = f"Workers on this node: {len(workers)} (" + ", ".join(
        f"{n} {state}" for state, n in sorted(by_state.items(), key=lambda kv: str(kv[0]))) + ")"
    if paused:
        line += f"; {paused:,} task{'s' if paused != 1 else ''} paused in get"
    out = [line]
    if blocked:
        rows = [[str(w["pid"]), w["worker_id"], f"{w.get('paused', 0):,}", f"{w.get('tasks', 0):,}"]
                for w in sorted(blocked, key=lambda w: -w.get("paused", 0))[:MAX_ACTORS]]
        out += _table(["BLOCKED PID", "WORKER", "PAUSED", "TASKS HELD"], rows, right=(2, 3))
        if len(blocked) > MAX_ACTORS:
            out.append(f"  ... and {len(blocked) - MAX_ACTORS} more blocked workers (--json lists them all)")
    return out


def _tasks(tasks):
    s = tasks["by_state"]
    out = [f"Tasks: {s['queued']:,} queued, {s['running']:,} running, {s['finished']:,} finished, "
           f"{s['failed']:,} failed"]
    fns = sorted(tasks["by_function"].items(),
                 key=lambda kv: (-(kv[1]["running"] + kv[1]["queued"]), kv[0]))
    if fns:
        rows = [[name, f"{c['queued']:,}", f"{c['running']:,}", f"{c['finished']:,}", f"{c['failed']:,}"]
                for name, c in fns[:MAX_FUNCTIONS]]
        out += _table(["FUNCTION", "QUEUED", "RUNNING", "FINISHED", "FAILED"], rows, right=(1, 2, 3, 4))
        if len(fns) > MAX_FUNCTIONS:
            out.append(f"  ... and {len(fns) - MAX_FUNCTIONS} more functions (--json lists them all)")
    return out + [""]


def _actors(actors):
    if not actors:
        return []
    states = {}
    for a in actors:
        states[a["state"]] = states.get(a["state"], 0) + 1
    out = ["Actors: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))]
    live = [a for a in actors if a["state"] != "dead"][:MAX_ACTORS]
    rows = [[a["class_name"] + (f" {a['name']!r}" if a.get("name") else ""), a["actor_id"][:12],
             a["state"], a["node_id"][:12], str(a["pid"] or "")] for a in live]
    if rows:
        out += _table(["ACTOR", "ID", "STATE", "NODE", "PID"], rows)
    return out + [""]


def _demands(infeasible):
    if not infeasible:
        return []
    out = ["Pending demands (no node can run these; they wait until one can):"]
    for d in infeasible[:MAX_DEMANDS]:
        res = ", ".join(f"{k} {v:g}" for k, v in sorted(d["resources"].items()))
        out.append(f"  {d.get('count', 1):,} x {d['name']}() needing {{{res}}}: {d['reason']}")
    return out + [""]


def _last_failure(failures):
    if not failures:
        return []
    f = failures[-1]
    when = time.strftime("%H:%M:%S", time.localtime(f["time"]))
    message = f["message"].splitlines()[0] if f["message"] else ""
    where = f"pid {f['pid']}" if f["pid"] else "before it ran"
    return [f"Last failure ({len(failures)} recent): {f['name']}() at {when} on node "
            f"{f['node_id'][:12]} {where}: {f['error_type']}: {message}",
            "  (tracebacks: `actorscoop status --json`, or the dashboard)", ""]


# ---------------------------------------------------------------------- helpers
def _table(header, rows, right=()):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "  " + "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(header)] + [line(r) for r in rows]


def _used(total, available, key, named=False):
    t = total.get(key, 0)
    text = f"{t - available.get(key, 0):g}/{t:g}"
    return f"{key} {text}" if named else text


def _summed(nodes):
    tot, av = {}, {}
    for n in nodes:
        if n.get("alive"):
            for k, v in (n.get("resources") or {}).items():
                tot[k] = tot.get(k, 0) + v
            for k, v in (n.get("available") or {}).items():
                av[k] = av.get(k, 0) + v
    return tot, av


def _store(st):
    if st and "capacity" not in st and "used" in st:  # a member, as its heartbeat tells it
        return f"{size(st['used'])} used"
    if not st or "capacity" not in st:
        return (st or {}).get("error", "")[:40]
    text = f"{size(st.get('used', 0))} / {size(st['capacity'])}"
    if st.get("spilled_bytes"):
        text += f", {size(st['spilled_bytes'])} spilled"
    return text


def _dropped(status):
    """Bad messages this node dropped, and peers refused (docs/security.md)."""
    cl = status.get("cluster") or {}
    dropped = sum((status.get("dropped") or {}).values()) + sum(((status.get("store") or {}).get("dropped") or {}).values())
    dropped += sum((cl.get("dropped") or {}).values()) + sum(((cl.get("transfer") or {}).get("refused") or {}).values())
    refused = sum((cl.get("refused") or {}).values())
    out = []
    if refused:
        out.append(f"Connections refused (no or wrong token): {refused:,}")
    if dropped:
        out.append(f"Bad messages dropped: {dropped:,} (by kind: `actorscoop status --json`, \"dropped\")")
    return out


def _monitor(mon):
    """This node's memory monitor (docs/limits.md)."""
    if not mon:
        return []
    if not mon.get("enabled"):
        return ["Memory monitor: off"]
    used = (f"{size(mon['used'])} of {size(mon['total'])} used ({mon.get('source', '')}); "
            if mon.get("total") else "")
    return [f"Memory monitor: {used}kills a worker above {mon['threshold']:.0%} "
            f"({mon['kills']} so far)"]


def _memory(mem):
    if not mem or not mem.get("total"):
        return ""
    return f"{size(mem.get('available', 0))} / {size(mem['total'])}"


def size(n) -> str:
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
