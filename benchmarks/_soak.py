"""The soak part of benchmarks/reliability.py (issue 8): a mixed, steady workload on a
4-node loopback cluster for a number of minutes, while the processes and tables that
should not grow are sampled.

    python benchmarks/reliability.py --only soak --minutes 60 [--sample 30] [--kill-every 180] [--write]

A round (see ``Soak.round``) runs no-op tasks, nested tasks, actor calls (long-lived named
actors, reached through their handles and through ``get_actor``; actors created, called,
looked up and killed), small and large objects put, made on one node and pulled to
others, and ``futures.map``. Every result is checked, and every no-op's executions are
logged (one line per run, in a file named after the worker's pid), so a task never run or
run twice is counted; a second run is justified only when an earlier one was in a worker
this script SIGKILLed (``--kill-every``). Every ``--sample`` seconds: RSS, USS, fds and
threads of the driver and of each node's raylet, store and zygote and of the long-lived
actors; each node's tables (status "tables"), store use and workers; /dev/shm.
"""
import collections
import os
import random
import shutil
import sys
import tempfile
import time
import zlib

import cloudpickle
import numpy as np
import psutil

import actorscoop as asc
from actorscoop import exceptions as E
from actorscoop import futures
from actorscoop._cli._main import request
from actorscoop.testing import Cluster

import _drift as D
from _runlog import ENV as RUN_LOG, noop, runs

# the workers cannot import this module: its functions and classes travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

NODES = 4
WAVE = 300  # no-op tasks a round
TREES, DEPTH = 2, 3  # nested task trees a round, 2**(DEPTH+1)-1 tasks each
LARGE = 4 * D.MiB  # bytes of a large object
SMALLS = 20  # small objects a round
LONG_ACTORS = 3  # long-lived named actors, one on each non-head node
CALLS = 10  # calls to each long-lived actor a round
MAP_N = 50  # items of futures.map a round
TIMEOUT = 120.0  # seconds a round's result may take
USS_PER_HOUR = 16 * D.MiB  # judged: USS slope after warm-up, or ...
USS_FLOOR = 8 * D.MiB  # ... fitted growth after warm-up (what a short run cannot tell from noise)
COUNT_PER_HOUR = 20  # judged: fds and threads, slope after warm-up, or ...
COUNT_FLOOR = {"fds_net": 8, "threads": 2}  # ... fitted growth (a short run's noise: two workers' fds)
FDS_PER_WORKER = 4  # a raylet's fds per worker process (its socket, log pipes, pidfd)
# The bounded stores of the nodes, made small so that they fill during warm-up (their
# filling is not drift): task events kept (default 100,000), dead actors remembered per
# node (default 1,000).
CAPS = {"task_event_rows": 2_000, "dead_actors_kept": 100}
# tables (status "tables") that hold the work in flight: empty once it is done and dropped
WORK_TABLES = ("raylet.tasks", "scheduler.tasks", "objects.entries", "objects.early",
               "raylet.unknown_gets", "cluster.lookups", "cluster.results_waiting", "cluster.held",
               "transfer.pulls", "transfer.deferred", "head.placed", "head.names", "actors.names")


# ---------------------------------------------------------------------- the workload
@asc.remote
def tree(i, depth):
    if depth == 0:
        return i
    return sum(asc.get([tree.remote(i, depth - 1), tree.remote(i + 1, depth - 1)]))


def tree_value(i, depth):
    """What ``tree(i, depth)`` returns: 2**depth leaves, i plus the right turns above each."""
    return (1 << depth) * i + depth * (1 << depth) // 2


@asc.remote
def crc(buf):
    return zlib.crc32(buf)


@asc.remote
def make_large(seed, nbytes):
    return _large(seed, nbytes)


def _large(seed, nbytes):
    a = np.full(nbytes, seed % 251, dtype=np.uint8)
    a[:8] = np.frombuffer(seed.to_bytes(8, "little"), dtype=np.uint8)
    return a


@asc.remote
def small_sum(*items):
    return sum(d["i"] for d in items)


@asc.remote
def small_sum_nested(refs):
    """Refs nested in a container stay refs: this task borrows them."""
    return sum(d["i"] for d in asc.get(refs))


def square(x):
    return x * x


@asc.remote
class Accumulator:
    def __init__(self):
        self.total = 0

    def add(self, k):
        self.total += k
        return self.total

    def pid(self):
        return os.getpid()


def _on(node):
    """Options that place a task or actor on node ``node`` (and an actor holds no CPU)."""
    return {"resources": {f"n{node}": 0.001}}


# ---------------------------------------------------------------------- the run
class Soak:
    def __init__(self, minutes, sample_every, kill_every, seed):
        self.duration = minutes * 60.0
        self.sample_every = sample_every
        self.kill_every = kill_every
        self.rng = random.Random(seed)
        self.rounds = []  # (seconds since start, round seconds, tasks)
        self.right = 0
        self.wrong = collections.Counter()  # kind -> results that were not what they should be
        self.errors = collections.Counter()  # "kind: error type" -> count
        self.killed = []  # pids this script SIGKILLed
        self.samples = []  # (t, {process: figures}, {node: tables}, shm bytes)
        self.log_dir = tempfile.mkdtemp(prefix="asc-soak-")

    # ------------------------------------------------------------ setup
    def start(self):
        os.environ[RUN_LOG] = self.log_dir  # the nodes and their workers inherit it
        self.cluster = Cluster(nodes=[{"num_cpus": 1, "resources": {f"n{i}": 100}} for i in range(NODES)],
                               object_store_memory=128 * D.MiB, config=CAPS)
        asc.init(address=self.cluster.address)
        self.actors = {k: Accumulator.options(name=f"soak-acc-{k}", num_cpus=0, **_on(k)).remote()
                       for k in range(1, 1 + LONG_ACTORS)}
        self.totals = dict.fromkeys(self.actors, 0)
        self.procs = {"driver": os.getpid()}
        self.stores = []
        for i in range(NODES):
            raylet = psutil.Process(self.cluster.info(i)["pid"])
            label = f"node {i}{' (head)' if i == 0 else ''}"
            self.procs[f"{label} raylet"] = raylet.pid
            for child in raylet.children():
                cmd = " ".join(child.cmdline())
                if "actorscoop.plasma" in cmd:
                    self.procs[f"{label} store"] = child.pid
                    self.stores.append(child.pid)
                elif "actorscoop.node.worker._zygote" in cmd:
                    self.procs[f"{label} zygote"] = child.pid
        for k, h in self.actors.items():
            self.procs[f"actor soak-acc-{k} (node {k})"] = asc.get(h.pid.remote(), timeout=TIMEOUT)

    # ------------------------------------------------------------ checks
    def check(self, kind, refs, expected, key=None):
        """Get ``refs`` (a list) and compare (``key`` of) each value with ``expected``;
        count what differs."""
        try:
            got = asc.get(refs, timeout=TIMEOUT)
        except E.ActorScoopError as exc:
            self.errors[f"{kind}: {type(exc).__name__}"] += len(refs)
            return
        bad = sum(1 for a, b in zip(got, expected) if (a if key is None else key(a)) != b)
        self.wrong[kind] += bad
        self.right += len(refs) - bad

    # ------------------------------------------------------------ a round
    def round(self, r):
        """One round of the mixed workload; returns how many tasks and calls it ran."""
        k, k2 = 1 + r % 3, 1 + (r + 1) % 3  # two different non-head nodes
        base = r * WAVE
        noops = [noop.remote(i) for i in range(base, base + WAVE)]
        trees = [tree.remote(base + j, DEPTH) for j in range(TREES)]
        big = _large(r, LARGE)
        big_ref = asc.put(big)
        pulled = crc.options(**_on(k)).remote(big_ref)  # the driver's node -> k
        made = make_large.options(**_on(k)).remote(r, LARGE)  # in k's store
        moved = crc.options(**_on(k2)).remote(made)  # k -> k2
        smalls = [asc.put({"i": i, "pad": b"s" * 512}) for i in range(SMALLS)]
        small_refs = [small_sum.options(**_on(k2)).remote(*smalls),
                      small_sum_nested.options(**_on(k)).remote(smalls)]
        if self.kill_every and time.monotonic() >= self.next_kill:
            self.kill()
        tmp = Accumulator.options(num_cpus=0, **_on(k2)).remote()
        Accumulator.options(name=f"soak-tmp-{r}", num_cpus=0, **_on(k)).remote()
        looked = asc.get_actor(f"soak-tmp-{r}")
        tmp_refs = [tmp.add.remote(j) for j in range(1, 6)] + [looked.add.remote(j) for j in range(1, 6)]
        calls = {}
        for a, h in self.actors.items():
            calls[a] = [h.add.remote(j) for j in range(1, CALLS + 1)]
        mapped = list(futures.map(square, range(MAP_N)))  # (a failure raises: the run stops)
        bad = sum(1 for x, y in zip(range(MAP_N), mapped) if y != x * x) + MAP_N - len(mapped)
        self.wrong["futures.map"] += bad
        self.right += MAP_N - bad

        self.check("no-op", noops, list(range(base, base + WAVE)))
        self.check("nested", trees, [tree_value(base + j, DEPTH) for j in range(TREES)])
        want = zlib.crc32(big)  # make_large(r) makes the same bytes as big
        self.check("large", [pulled, moved, made], [want] * 3, key=lambda v: v if isinstance(v, int) else zlib.crc32(v))
        self.check("small", small_refs, [sum(range(SMALLS))] * 2)
        running = [j * (j + 1) // 2 for j in range(1, 6)]
        self.check("short-lived actor", tmp_refs, running * 2)
        for a, refs in calls.items():
            t = self.totals[a]
            self.check("long-lived actor", refs, [t + j * (j + 1) // 2 for j in range(1, CALLS + 1)])
            self.totals[a] = t + CALLS * (CALLS + 1) // 2 + 1  # and the call through get_actor:
            self.check("named lookup", [asc.get_actor(f"soak-acc-{a}").add.remote(1)], [self.totals[a]])
        asc.kill(tmp)
        asc.kill(looked)
        return WAVE + TREES * ((2 << DEPTH) - 1) + 5 + MAP_N + 10 + LONG_ACTORS * (CALLS + 1)

    def kill(self):
        """SIGKILL a task worker (not an actor) of a random non-head node, a busy one if any."""
        self.next_kill = time.monotonic() + self.kill_every
        node = self.rng.randrange(1, NODES)
        status = request(self.cluster.info(node), "status")
        actors = {a["pid"] for a in status["actors"]}
        workers = [w for w in status["workers"] if w["pid"] not in actors]
        busy = [w for w in workers if w["state"] != "idle"] or workers
        if busy:
            pid = self.rng.choice(busy)["pid"]
            try:
                os.kill(pid, 9)
                self.killed.append(pid)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------ samples
    def node_tables(self):
        out = []
        for i in range(NODES):
            s = request(self.cluster.info(i), "status")
            store = s.get("store") or {}
            out.append({**s["tables"], "store.used": store.get("used", 0),
                        "store.objects": store.get("num_objects", 0), "workers": len(s["workers"]),
                        "live actors": sum(1 for a in s["actors"] if a["state"] != "dead")})
        return out

    def sample(self, t):
        figures = {name: D.process_figures(pid) for name, pid in self.procs.items()}
        self.samples.append((t, figures, self.node_tables(), D.shm_files(self.stores)[0]))

    def run(self):
        started = time.monotonic()
        self.next_kill = started + (self.kill_every or 0)
        next_sample = started
        r = 0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                self.sample(now - started)
                next_sample = now + self.sample_every
            if now - started >= self.duration:
                break
            t0 = time.perf_counter()
            n = self.round(r)
            self.rounds.append((now - started, time.perf_counter() - t0, n))
            r += 1
        self.ran = time.monotonic() - started

    # ------------------------------------------------------------ the end
    def drain(self, timeout=60.0):
        """Drop the long-lived actors, then wait until every node's work tables, store and
        actors are empty (or ``timeout``); returns the last tables seen."""
        for h in self.actors.values():
            asc.kill(h)
        self.actors.clear()
        deadline = time.monotonic() + timeout
        while True:
            tables = self.node_tables()
            if all(t[k] == 0 for t in tables for k in WORK_TABLES + ("store.used", "store.objects", "live actors")
                   if k in t) or time.monotonic() > deadline:
                return tables
            time.sleep(0.1)

    def stop(self):
        """Shut down; wait until the cluster's processes are gone and its /dev/shm files
        removed (or 30 s); returns (processes left, shm files left)."""
        asc.shutdown()
        self.cluster.shutdown()
        os.environ.pop(RUN_LOG, None)
        pids = [pid for name, pid in self.procs.items() if name != "driver"]
        deadline = time.monotonic() + 30
        while True:
            left = [pid for pid in pids if _alive(pid)]
            shm = D.shm_files(self.stores)
            if (not left and not shm[1]) or time.monotonic() > deadline:
                return left, shm
            time.sleep(0.05)

    def runs(self):
        """(never run, run more than once, of which justified by a kill) over the no-ops."""
        by_task, killed = runs(self.log_dir), set(self.killed)
        never = sum(1 for i in range(len(self.rounds) * WAVE) if i not in by_task)
        again = [pids for pids in by_task.values() if len(pids) > 1]
        twice = sum(len(pids) - 1 for pids in again)
        justified = sum(min(len(pids) - 1, sum(p in killed for p in pids)) for pids in again)
        return never, twice, justified


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# ---------------------------------------------------------------------- the report
def _throughput(rounds, ran):
    """Tasks per second over the rounds that started in the first and in the last 10% of
    the run (the first and the last round when a window holds none)."""
    def rate(rs):
        return sum(n for _, _, n in rs) / sum(s for _, s, _ in rs)
    first = [x for x in rounds if x[0] < D.WARMUP * ran] or rounds[:1]
    last = [x for x in rounds if x[0] >= (1 - D.WARMUP) * ran] or rounds[-1:]
    return rate(first), rate(last)


def _series(samples):
    """process -> metric -> points; table -> points (summed over the nodes)."""
    procs = collections.defaultdict(lambda: collections.defaultdict(list))
    tables = collections.defaultdict(list)
    for t, figures, nodes, _shm in samples:
        for name, fig in figures.items():
            for key, v in (fig or {}).items():
                procs[name][key].append((t, v))
            if fig:  # what is judged: a raylet's fds net of the node's workers
                node = int(name.split()[1]) if name.endswith("raylet") else None
                net = fig["fds"] - (FDS_PER_WORKER * nodes[node]["workers"] if node is not None else 0)
                procs[name]["fds_net"].append((t, net))
        for key in nodes[0]:
            tables[key].append((t, sum(n.get(key, 0) for n in nodes)))
    return procs, tables


def _table_rows(tables, drained, duration):
    rows = ["| table (summed over the nodes) | after warm-up | peak | end of the work | after the drain |",
            "|---|---:|---:|---:|---:|"]
    for key, points in tables.items():
        d = D.Drift(points, duration)
        after = sum(n.get(key, 0) for n in drained)
        if d.peak or after:
            rows.append(f"| {key}{' (work)' if key in WORK_TABLES else ''} | {d.warm:,} | {d.peak:,} | "
                        f"{d.end:,} | {after:,} |")
    return rows


def part_soak(minutes, sample_every, kill_every, seed):
    soak = Soak(minutes, sample_every, kill_every, seed)
    try:
        soak.start()
        try:
            soak.run()
            drained = soak.drain()
        finally:
            left, shm_after = soak.stop()
        never, twice, justified = soak.runs()
    finally:
        shutil.rmtree(soak.log_dir, ignore_errors=True)
    ran, rounds = soak.ran, soak.rounds
    procs, tables = _series(soak.samples)
    first, last = _throughput(rounds, ran)
    n_tasks = sum(n for _, _, n in rounds)
    wrong = sum(soak.wrong.values())
    shm_peak = max(s[3] for s in soak.samples)
    not_empty = {f"node {i}: {k}={t[k]}" for i, t in enumerate(drained)
                 for k in WORK_TABLES + ("store.used", "store.objects", "live actors") if t.get(k)}
    uss_bad = [name for name, m in procs.items() if not D.within(D.Drift(m["uss"], ran), USS_PER_HOUR, USS_FLOOR)]
    counts_bad = [f"{name} {key}" for name, m in procs.items() for key in ("fds_net", "threads")
                  if not D.within(D.Drift(m[key], ran), COUNT_PER_HOUR, COUNT_FLOOR[key])]
    criteria = [
        (wrong == 0 and not soak.errors, f"every result right ({soak.right:,}): 0 wrong, no error"),
        (never == 0 and twice == justified,
         "no no-op task lost, none run twice unless an earlier run was in a worker this run killed"),
        (not uss_bad, f"USS of every process: slope after warm-up at most {USS_PER_HOUR / D.MiB:.0f} MiB per "
                      f"hour, or its trend line gains at most {USS_FLOOR / D.MiB:.0f} MiB"
                      + (f" (not: {', '.join(uss_bad)})" if uss_bad else "")),
        (not counts_bad, f"fds (of a raylet: net of {FDS_PER_WORKER} per worker of its node) and threads "
                         f"of every process: slope after warm-up at most {COUNT_PER_HOUR} per hour, or the trend "
                         f"line gains at most {COUNT_FLOOR['fds_net']} fds, {COUNT_FLOOR['threads']} threads"
                         + (f" (not: {', '.join(counts_bad)})" if counts_bad else "")),
        (not not_empty, "after the drain every node's work tables, store and live actors are empty"
                        + (f" (not: {', '.join(sorted(not_empty))})" if not_empty else "")),
        (shm_after == (0, 0) and not left, "after shutdown no process of the cluster is left and its "
                                           "/dev/shm files are gone (the baseline: none before it started)"),
    ]
    ok = all(c for c, _ in criteria)
    kills = (f"{len(soak.killed)} task workers SIGKILLed (one every {kill_every:g} s, busy ones first)"
             if kill_every else "none (no --kill-every)")
    out = [
        f"### Soak: {ran / 60:.1f} minutes on a {NODES}-node loopback cluster (1 CPU each) and a driver\n",
        f"- each round: {WAVE} no-op tasks; {TREES} nested task trees ({(2 << DEPTH) - 1} tasks each); a "
        f"{LARGE // D.MiB} MiB object put and pulled by a task on another node, one made on a node and pulled "
        f"by a task on a third and by the driver; {SMALLS} small objects passed to tasks on other nodes (as "
        f"arguments and as nested refs); {CALLS} calls to each of {LONG_ACTORS} long-lived named actors and one "
        f"through `get_actor`; 2 actors created, called 5 times (one through `get_actor`) and killed; "
        f"`futures.map` over {MAP_N} items",
        f"- {len(rounds):,} rounds, {n_tasks:,} tasks and calls; tasks/s in the first 10% of the run "
        f"{first:,.0f}, in the last 10% {last:,.0f} ({last / first:.2f}x; not judged: the machine may be shared)",
        f"- kills: {kills}",
        f"- results: {soak.right:,} right, {wrong} wrong"
        + (f" ({', '.join(f'{v} {k}' for k, v in soak.wrong.items() if v)})" if wrong else "")
        + "; errors: " + (", ".join(f"{v} {k}" for k, v in sorted(soak.errors.items())) or "none"),
        f"- no-op executions: never run {never}; run more than once {twice} (justified by a kill: {justified})",
        f"- {len(soak.samples)} samples, one every {sample_every:g} s; warm-up: the first "
        f"{D.WARMUP:.0%}, at least {D.WARMUP_MIN:g} s ({D.warmup(ran):.0f} s); slope: least squares after warm-up; fitted growth: "
        f"slope x time after warm-up; the nodes' bounded stores made small to fill during warm-up: "
        + ", ".join(f"{k}={v:,}" for k, v in CAPS.items()),
        "",
        *D.memory_rows(procs, ran), "",
        *D.count_rows(procs, ran), "",
        *_table_rows(tables, drained, ran), "",
        f"- /dev/shm, the cluster's files: {shm_peak / D.MiB:.1f} MiB resident at the peak (the stores' "
        f"arenas), {shm_after[1]} files ({shm_after[0] / D.MiB:.1f} MiB) after shutdown; processes left: {len(left)}",
        "",
        *(f"- {'ok' if c else 'FAIL'}: {text}" for c, text in criteria),
        f"- **{'PASS' if ok else 'FAIL'}**: no wrong or lost result, memory, fds and threads not growing, "
        f"tables empty, /dev/shm at its baseline",
        ""]
    return "\n".join(out)
