#!/usr/bin/env python
"""Multi-node benchmarks (issue 6): actorscoop against Ray on loopback clusters.

    python benchmarks/cluster_bench.py               # full run: 3 fresh processes per cell,
                                                     # appends to benchmarks/RESULTS.md
    python benchmarks/cluster_bench.py --quick       # smoke run (prints only): 2,000 tasks, 64 MiB
    python benchmarks/cluster_bench.py --workloads transfer --transfer-mb 256 --only asc

Every node is a real raylet (own store, workers, session) on this machine; the driver
runs on the head, node A. actorscoop: `actorscoop.testing.Cluster`; Ray:
`ray.cluster_utils.Cluster`.

- throughput (C1): 4 nodes of 1 CPU each. After a warm-up (rounds of 8 tasks sleeping
  0.2 s until every node has run one, then 500 no-ops), the driver submits 20,000 no-op
  tasks (each returns the id of the node it ran on), then gets them all: tasks/s, and how
  many tasks each node ran. Target: ≥ 2× Ray's tasks/s, every node running ≥ 5% of them.
- transfer (C2): 2 nodes; node B alone has the resource {"b": 1}. A task needing it returns
  a random 1 GiB uint8 array (and its crc32 and the wall time of its return); the driver
  on A waits for it (without fetching), then gets it and checks the crc32. Reported: GB/s
  from the task's return to the array being usable in the driver, and the get() after
  wait() alone. Target: ≥ 1 GB/s and ≥ Ray's rate.
- deadnode (C3): 4 nodes of 1 CPU each, the same warm-up. 12 tasks; one that lands on
  node D sleeps there, the others sleep 0.3 s (a retry of a task killed on D returns at
  once). Once one has started on D, D's raylet is SIGKILLed: the time from the kill until
  the task(s) that were running on D have finished elsewhere (default max_retries), until
  all 12 results are in, and until the control plane reports D dead. actorscoop runs with
  `node_timeout=2.0`; Ray with its defaults. Reported, no bound.
- balance (issue 19): 4 nodes of 1 CPU, the same warm-up; tasks that sleep (so the cores
  are not the limit), submitted by the driver on A: 64 heavy-tailed lengths (0.02-1.5 s)
  for each of 3 seeds, 4 long then 60 short, 60 short then 4 long, 48 equal, and a binary
  tree of nested tasks of depth 5 (twice: cold, then with its workers up). Makespan per shape; efficiency = ideal makespan
  (max(work / 4 CPUs, longest task)) / measured, and against the best online schedule
  (each task starts, in submission order, on the first CPU that frees, at no cost) =
  that bound / measured. Target: >= 0.9 of the bound on every shape, and >= Ray's.
- recover (C5, issue 19): 3 nodes of 1 CPU; B and C have the resource {"b": 1}. A task
  needing it returns a random 100 MB uint8 array (and its crc32); the driver holds the ref
  without fetching it, so the only copy is where it was made. That node's raylet is
  SIGKILLed; the driver then gets the array: the time from the kill until it is usable
  (death detection, the task's rerun on the node left, the pull), and whether the task ran
  again elsewhere. actorscoop with `node_timeout=2.0`; Ray with its defaults. Reported.
- actor (C6, issue 19 item 3): 2 nodes; an actor pinned to node B by the resource {"b": 1}
  (no CPU held), called by the driver on A. After 500 calls (the route settles: actorscoop
  sends calls through the head until it knows the actor's node, then straight there),
  20,000 calls submitted at once then got (calls/s, results in order), then 1,000 calls
  one at a time (round-trip latency, median and p99). actorscoop also records how many
  timed calls passed the head and how many went direct. Reported beside Ray's.

Each (system, workload, repetition) runs in its own fresh process tree, watched by
_watchdog.py (timeout, memory guard, cleanup by pid); the cell machinery is
store_bench.py's. Runners: peers_cluster/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(HERE, "peers_cluster"))
import store_bench as sb  # noqa: E402  (re-executes under the bench venv when psutil is missing)
import _cluster_common as CC  # noqa: E402
import _sysinfo  # noqa: E402
import _watchdog  # noqa: E402

PEERS = os.path.join(HERE, "peers_cluster")
OUT = os.path.join(HERE, "out", "cluster")
DEFAULT_RESULTS = os.path.join(HERE, "RESULTS.md")
GiB = 2**30
SYSTEMS = ["actorscoop", "ray"]
LABEL = {"actorscoop": "actorscoop", "ray": "Ray"}
RUNNERS = {"actorscoop": "asc_cluster_peer.py", "ray": "ray_cluster_peer.py"}
WORKLOADS = list(CC.WORKLOADS)
ALIASES = {"asc": "actorscoop", "c1": "throughput", "c2": "transfer", "c3": "deadnode", "c4": "balance",
           "c5": "recover", "c6": "actor"}
BALANCE_TARGET = 0.9
C1_FACTOR = 2.0
C2_MIN_GBPS = 1.0


# --------------------------------------------------------------------------------------
# options and cells
# --------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help="comma-separated systems: " + ",".join(SYSTEMS))
    p.add_argument("--workloads", default="", help="comma-separated: " + ",".join(WORKLOADS)
                   + " (or c1,c2,c3)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 repetition, 2,000 tasks, a 64 MiB transfer")
    p.add_argument("--reps", type=int, default=None,
                   help="fresh processes per (system, workload); the median is reported (default 3, quick 1)")
    p.add_argument("--tasks", type=int, default=None, help="C1 tasks (default 20,000, quick 2,000)")
    p.add_argument("--transfer-mb", type=int, default=None,
                   help="C2 array size in MiB (default 1024 = 1 GiB, quick 64)")
    p.add_argument("--python", default=None, help="interpreter for the runners (default: the bench venv)")
    p.add_argument("--timeout", type=float, default=None,
                   help="wall-clock limit per cell, s (default 300, quick 120)")
    p.add_argument("--mem-limit-gb", type=float, default=10.0,
                   help="kill a cell whose process tree's summed PSS exceeds this (GiB)")
    p.add_argument("--results", default=None,
                   help="markdown file to append to (default benchmarks/RESULTS.md for full runs; "
                        "quick runs append only when this is given)")
    p.add_argument("--no-results", action="store_true", help="never append to a results file")
    p.add_argument("--snapshot", action="store_true",
                   help="measure actorscoop as committed at HEAD (exported with git archive), "
                        "not the working tree")
    args = p.parse_args(argv)
    args.systems = sb._pick(args.only, SYSTEMS, ALIASES, "system")
    args.workload_list = sb._pick(args.workloads, WORKLOADS, ALIASES, "workload")
    if args.python is None:
        args.python = sb.DEFAULT_VENV_PY if os.path.exists(sb.DEFAULT_VENV_PY) else sys.executable
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.timeout is None:
        args.timeout = 120.0 if args.quick else 300.0
    q = 1 if args.quick else 0
    args.tasks = args.tasks or CC.TASKS[q]
    args.transfer_mb = args.transfer_mb or CC.TRANSFER_MIB[q]
    if args.results is None and not args.quick:
        args.results = DEFAULT_RESULTS
    if args.no_results:
        args.results = None
    return args


def runner_cmd(args, system, workload):
    cmd = [args.python, os.path.join(PEERS, RUNNERS[system]), "--workload", workload,
           "--tasks", str(args.tasks), "--transfer-mb", str(args.transfer_mb)]
    return cmd + (["--quick"] if args.quick else [])


def parse_output(output):
    """(result dict or None, teardown problem or None) from a runner's output."""
    result, teardown = None, "no teardown_done mark"
    for line in output.splitlines():
        if line.startswith(CC.RESULT_MARK):
            try:
                result = json.loads(line[len(CC.RESULT_MARK):])
            except ValueError:
                pass
        elif line.startswith(CC.PROGRESS_MARK + "teardown_error "):
            teardown = line[len(CC.PROGRESS_MARK + "teardown_error "):]
        elif line.startswith(CC.PROGRESS_MARK + "teardown_done") and teardown == "no teardown_done mark":
            teardown = None
    return result, teardown


def make_cell(system, workload, rep, watch, *, timeout_s, mem_limit_gb, load=0.0, log="",
              leaked=()):
    """One cell from the watchdog's report (``watch``, with ``output``): the runner's
    result, or what stopped it (timeout, memory guard, exit without a result)."""
    watch = dict(watch)
    output = watch.pop("output", "")
    result, teardown = parse_output(output)
    cell = {"system": system, "workload": workload, "rep": rep, "log": log,
            "loadavg_1min_at_start": load, "leaked_shm": list(leaked), **watch}
    if result is not None:
        cell.update({k: v for k, v in result.items() if k not in ("system", "workload")})
        if result.get("status") == "ok" and teardown:
            cell["teardown_problem"] = (f"{watch['status']} during shutdown" if watch["status"] != "exited"
                                        else teardown)
        return cell
    if watch["status"] == "OOM-killed":
        cell["error"] = (f"OOM-killed (tree PSS > {mem_limit_gb:g} GiB) after "
                         f"{watch['elapsed_s']:.0f} s")
    elif watch["status"] == "timeout":
        cell["error"] = f"timeout (> {timeout_s:.0f} s)"
    else:
        tail = [ln for ln in output.splitlines() if ln.strip()]
        cell["error"] = f"exit code {watch['returncode']} without a result" + (
            f"; last line: {tail[-1][:200]}" if tail else "")
    cell["status"] = watch["status"] if watch["status"] != "exited" else "error"
    return cell


def run_cell(args, system, workload, rep):
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    log = os.path.join(OUT, "logs", f"{system}_{workload}_{rep}.log")
    load = os.getloadavg()[0]
    before = sb.shm_names()
    with sb.PidWatcher() as watcher:
        watch = _watchdog.run_guarded(runner_cmd(args, system, workload),
                                      env=sb.runner_env(system, PEERS), cwd=HERE,
                                      timeout_s=args.timeout, mem_limit_bytes=args.mem_limit_gb * GiB,
                                      log_path=log, mem_metric="pss", poll_s=0.5)
    leaked = sb.clean_leaked_shm(before, watcher.pids)
    cell = make_cell(system, workload, rep, watch, timeout_s=args.timeout,
                     mem_limit_gb=args.mem_limit_gb, load=load, log=os.path.relpath(log, REPO),
                     leaked=leaked)
    return cell


def brief(workload, cell):
    x = cell["metrics"]
    if workload == "throughput":
        return (f"{x['value']:,.0f} tasks/s; per node "
                + " ".join(f"{L}={x.get(f'tasks_{L}', 0)}" for L in CC.LETTERS))
    if workload == "transfer":
        return (f"{x['value']:.2f} GB/s return→usable ({x['return_to_ready_s']:.2f} s to ready, "
                f"{x['ready_to_got_s']:.3f} s get); bytes identical: {x['bytes_identical']}")
    if workload == "actor":
        return (f"{x['value']:,.0f} calls/s, round trip {x['rtt_median_ms']:.2f} ms median, "
                f"{x['rtt_p99_ms']:.2f} ms p99; in order: {x['results_in_order']}"
                + (f"; via head {x['route_via_head']}, direct {x['route_direct']}"
                   if "route_via_head" in x else ""))
    if workload == "balance":
        return "of the online bound: " + ", ".join(f"{r['vs_bound']:.2f}" for r in x["shapes"])
    if workload == "recover":
        return (f"kill→usable {x['value']:.2f} s; runs {x['runs']}, rebuilt elsewhere "
                f"{x['rebuilt_elsewhere']}; bytes identical: {x['bytes_identical']}")
    dead = f"{x['dead_report_s']:.1f} s" if x.get("dead_reported") else "not reported"
    return (f"kill→task(s) from D done {x['retried_s']:.2f} s, all done {x['value']:.2f} s; "
            f"D reported dead after {dead}; {x['unfinished_at_kill']} unfinished at kill")


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------

def errors_text(agg, limit=200):
    return "; ".join(agg["errors"]).replace("|", "/")[:limit]


def value_or_error(by, system, key, unit):
    """The median of ``key``, or why there is none (the cells' errors)."""
    a = by.get(system)
    if a is None:
        return "not run"
    if a["n_ok"] == 0:
        return f"error: {errors_text(a, 160)}" if a["errors"] else "—"
    return sb.fmt(sb.m(by, system, key), unit)


def judge(by, asc_ok, detail, peer_needed=False):
    """PASS/FAIL; FAIL when actorscoop has no result; NOT MEASURED when only the peer lacks one."""
    a = by.get("actorscoop")
    if a is None:
        return "**NOT MEASURED** (actorscoop not run)"
    if a["n_ok"] == 0:
        return f"**FAIL** (actorscoop has no result: {errors_text(a)})"
    if peer_needed:
        r = by.get("ray")
        if r is None:
            return "**NOT MEASURED** (Ray not run)"
        if r["n_ok"] == 0:
            return f"**NOT MEASURED** (Ray has no result: {errors_text(r)})"
    return sb.verdict(asc_ok, detail)


def shares_text(by, system):
    if not by.get(system) or sb.m(by, system, "min_share_pct") is None:
        return "—"
    ok = sb.m(by, system, "every_node_shares")
    return (f"{'PASS' if ok else 'FAIL'} (smallest share {sb.m(by, system, 'min_share_pct'):.1f}%, "
            f"{sb.fmt(sb.m(by, system, 'nodes_used'))} of 4 nodes used)")


def warmup_row(by):
    cells = []
    for s in ("actorscoop", "ray"):
        rounds, nodes = sb.m(by, s, "warmup_rounds"), sb.m(by, s, "warmup_nodes")
        cells.append("—" if rounds is None else f"{sb.fmt(rounds)} ({sb.fmt(nodes)} of 4 nodes)")
    return f"| warm-up rounds until every node had run a task | {cells[0]} | {cells[1]} | — |"


def table_throughput(by, args):
    A, R = "actorscoop", "ray"
    a, r = sb.m(by, A, "value"), sb.m(by, R, "value")
    out = [f"### C1. {args.tasks:,} no-op tasks on a 4-node loopback cluster (1 CPU per node)", "",
           f"The driver on node A (the head) submits {args.tasks:,} no-op tasks, each returning the "
           f"id of the node it ran on, then gets them all; after a warm-up (rounds of 8 tasks "
           f"sleeping 0.2 s until every node has run one, so workers are up everywhere, then "
           f"{CC.WARMUP_TASKS[1 if args.quick else 0]} no-ops). "
           f"Tasks/s over submit + get. **Higher is better.**", "",
           "| measure | actorscoop | Ray | actorscoop advantage over Ray |", "|---|---:|---:|---:|",
           f"| tasks/s | {value_or_error(by, A, 'value', '/s')} | {value_or_error(by, R, 'value', '/s')} | "
           f"{sb.ratio(sb.adv(a, r, 'higher'))} |"]
    sa, sr = sb.m(by, A, "submit_s"), sb.m(by, R, "submit_s")
    out.append(f"| submit phase | {sb.fmt(sa, 's')} | {sb.fmt(sr, 's')} | {sb.ratio(sb.adv(sa, sr, 'lower'))} |")
    for i, letter in enumerate(CC.LETTERS):
        where = "A (head, driver)" if i == 0 else letter
        cells = []
        for s in (A, R):
            n, pct = sb.m(by, s, f"tasks_{letter}"), sb.m(by, s, f"share_{letter}_pct")
            cells.append("—" if n is None else f"{n:,.0f} ({pct:.1f}%)")
        out.append(f"| tasks run on node {where} | {cells[0]} | {cells[1]} | — |")
    out.append(warmup_row(by))
    adv = sb.adv(a, r, "higher")
    shares_ok = sb.m(by, A, "every_node_shares")
    ok = None if adv is None else (adv >= C1_FACTOR and bool(shares_ok))
    out += ["", f"- tasks/s per run: actorscoop {sb.runs_of(by, A, 'value', '')}; Ray {sb.runs_of(by, R, 'value', '')}.",
            "- Per-node counts are medians over the runs (so they need not add up exactly).",
            f"- Check: every node ran ≥ {CC.MIN_SHARE:.0%} of the tasks: actorscoop {shares_text(by, A)}; "
            f"Ray {shares_text(by, R)}.",
            f"- Target: throughput ≥ {C1_FACTOR:g}× Ray's, every node doing a share: "
            + judge(by, ok, f"{sb.ratio(adv)}, needs {C1_FACTOR:.2f}×; actorscoop's nodes "
                            f"{'all' if shares_ok else 'not all'} ran a share", peer_needed=True)]
    return out


def table_transfer(by, args):
    A, R = "actorscoop", "ray"
    mib = args.transfer_mb
    a, r = sb.m(by, A, "value"), sb.m(by, R, "value")
    out = [f"### C2. A {mib:,} MiB array made on node B, fetched by the driver on node A", "",
           f"2 nodes of 1 CPU, object store of {mib} MiB + 256 MiB on each; node B alone has the "
           f"resource `b`. A task needing it returns a random uint8 array of {mib * CC.MiB / 1e9:.2f} GB "
           f"with its crc32 and the wall time of its `return`; the driver `wait`s for it (no "
           f"fetch), then `get`s it and recomputes the crc32. **Higher GB/s is better.**", "",
           "| measure | actorscoop | Ray | actorscoop advantage over Ray |", "|---|---:|---:|---:|",
           f"| transfer rate: task's return → array usable in the driver | "
           f"{value_or_error(by, A, 'value', 'GB/s')} | {value_or_error(by, R, 'value', 'GB/s')} | "
           f"{sb.ratio(sb.adv(a, r, 'higher'))} |"]
    for label, key, unit, better in (
            ("… task's return → wait() ready", "return_to_ready_s", "s", "lower"),
            ("… wait() ready → get() returned", "ready_to_got_s", "s", "lower"),
            ("get() after wait(), as a rate", "get_after_wait_GBps", "GB/s", "higher")):
        va, vr = sb.m(by, A, key), sb.m(by, R, key)
        out.append(f"| {label} | {sb.fmt(va, unit)} | {sb.fmt(vr, unit)} | {sb.ratio(sb.adv(va, vr, better))} |")
    for label, key in (("bytes identical (crc32 on B = crc32 on A)", "bytes_identical"),
                       ("made on node B", "made_on_B"), ("driver on node A", "driver_on_A")):
        out.append(f"| {label} | {sb.fmt(sb.m(by, A, key))} | {sb.fmt(sb.m(by, R, key))} | — |")
    adv = sb.adv(a, r, "higher")
    intact = sb.m(by, A, "bytes_identical") and sb.m(by, A, "made_on_B")
    out += ["", f"- GB/s per run: actorscoop {sb.runs_of(by, A, 'value', '')}; Ray {sb.runs_of(by, R, 'value', '')}.",
            "- Where the bytes move: Ray's `wait(fetch_local=False)` returns once the object is "
            "sealed in B's store, and `get` pulls it to A. actorscoop's `wait` fetches a result "
            "that lies on another node (it ignores `fetch_local`), so it returns only once the "
            "bytes are on A and its `get` is a local read. Only the first row compares the same path.",
            f"- Target: ≥ {C2_MIN_GBPS:g} GB/s, bytes identical: "
            + judge(by, None if a is None else (a >= C2_MIN_GBPS and bool(intact)),
                    f"{sb.fmt(a, 'GB/s')}; bytes identical: {sb.fmt(sb.m(by, A, 'bytes_identical'))}"),
            "- Target: ≥ Ray's rate: "
            + judge(by, None if adv is None else adv >= 1.0, f"{sb.ratio(adv)}", peer_needed=True)]
    return out


def table_deadnode(by, args):
    A, R = "actorscoop", "ray"
    a, r = sb.m(by, A, "value"), sb.m(by, R, "value")
    out = ["### C3. SIGKILL of a node's raylet under load: time until the work finishes elsewhere", "",
           f"4 nodes of 1 CPU, warmed up until every node has run a task. The driver submits "
           f"{CC.PROBES} tasks (default retries); a task that lands on node D sleeps there, the "
           f"others sleep {CC.PROBE_SHORT_S:g} s, and the retry of a task killed on D returns at "
           f"once. As soon as one has started on D, D's raylet is SIGKILLed. Timed from the "
           f"kill. **Lower is better.**", "",
           "| measure | actorscoop | Ray | actorscoop advantage over Ray |", "|---|---:|---:|---:|"]
    ta, tr = sb.m(by, A, "retried_s"), sb.m(by, R, "retried_s")
    out += [f"| kill → the task(s) running on D finished elsewhere | {value_or_error(by, A, 'retried_s', 's')} | "
            f"{value_or_error(by, R, 'retried_s', 's')} | {sb.ratio(sb.adv(ta, tr, 'lower'))} |",
            f"| kill → all {CC.PROBES} results (on A–C) | {sb.fmt(a, 's')} | {sb.fmt(r, 's')} | "
            f"{sb.ratio(sb.adv(a, r, 'lower'))} |"]

    def dead(s):
        if not by.get(s) or by[s]["n_ok"] == 0:
            return "—"
        if not sb.m(by, s, "dead_reported"):
            return f"not within {CC.AFTER_KILL_DEADLINE_S:.0f} s (in at least one run)"
        return sb.fmt(sb.m(by, s, "dead_report_s"), "s")
    da, dr = sb.m(by, A, "dead_report_s"), sb.m(by, R, "dead_report_s")
    out.append(f"| kill → node D reported dead | {dead(A)} | {dead(R)} | {sb.ratio(sb.adv(da, dr, 'lower'))} |")
    for label, key in (("tasks unfinished at the kill", "unfinished_at_kill"),
                       ("… of which running on D", "running_on_victim_at_kill"),
                       ("SIGKILL + reap of the raylet", "kill_call_s")):
        unit = "s" if key.endswith("_s") else ""
        out.append(f"| {label} | {sb.fmt(sb.m(by, A, key), unit)} | {sb.fmt(sb.m(by, R, key), unit)} | — |")
    for label, key in (("every result from a surviving node", "finished_elsewhere"),
                       ("results complete and in order", "results_in_order")):
        out.append(f"| {label} | {sb.fmt(sb.m(by, A, key))} | {sb.fmt(sb.m(by, R, key))} | — |")
    out.append(warmup_row(by))
    hb = {s: ((by.get(s) or {}).get("options") or {}) for s in (A, R)}
    out += ["", f"- kill → task(s) from D finished, per run: actorscoop {sb.runs_of(by, A, 'retried_s', 's')}; "
                f"Ray {sb.runs_of(by, R, 'retried_s', 's')}.",
            f"- Dead-node detection: actorscoop with `node_timeout={CC.ASC_NODE_TIMEOUT:g}` s "
            f"(Cluster config); Ray {hb[R].get('heartbeat') or 'with its defaults'}.",
            "- Target: time from the kill to the tasks finished elsewhere reported (no bound): "
            + ("**REPORTED**" if by.get(A) and by[A]["n_ok"] else judge(by, None, ""))]
    return out


def table_balance(by, args):
    A, R = "actorscoop", "ray"
    names = [f"heavy-tailed 0.02-1.5 s, seed {s}" for s in CC.HEAVY_SEEDS] + [
        "4 long (1 s) first, then 60 short (0.05 s)", "60 short first, then 4 long", "48 equal (0.25 s)",
        f"binary tree of nested tasks, depth {CC.TREE_DEPTH} ({CC.TREE_S:g} s each), first run "
        "(its extra workers start meanwhile)", "the same tree again (workers up)"]
    ideal, online = CC.tree_bounds()
    bounds = [CC.ideal_makespan(x) / CC.online_makespan(x) for _n, x in CC.balance_shapes()] + [ideal / online] * 2
    out = ["### C4. Load balancing without task lengths: 4 nodes of 1 CPU, tasks that sleep", "",
           "The driver on A submits each shape's tasks and gets them all. *efficiency* = ideal makespan "
           "(max(work / 4 CPUs, longest task)) / measured; *of bound* = the best online schedule's "
           "makespan (each task starts, in submission order, on the first CPU that frees, at no "
           "cost) / measured. **Higher is better**; 1.0 = as good as the bound.", "",
           "| shape | bound's efficiency | actorscoop efficiency | actorscoop of bound | Ray efficiency | "
           "Ray of bound | actorscoop / Ray |", "|---|---:|---:|---:|---:|---:|---:|"]
    worst, beats = None, True
    for i, name in enumerate(names):
        ea, er = sb.m(by, A, f"efficiency_{i}"), sb.m(by, R, f"efficiency_{i}")
        va, vr = sb.m(by, A, f"vs_bound_{i}"), sb.m(by, R, f"vs_bound_{i}")
        out.append(f"| {name} | {bounds[i]:.2f} | {sb.fmt(ea)} | {sb.fmt(va)} | {sb.fmt(er)} | {sb.fmt(vr)} | "
                   f"{sb.ratio(sb.adv(va, vr, 'higher'))} |")
        if va is not None:
            worst = va if worst is None else min(worst, va)
        if va is not None and vr is not None and va < vr:
            beats = False
    out.append(warmup_row(by))
    out += ["", f"- The nested tree's bound: a task can start only once its parent has submitted it "
                f"(at first only the root can run), so the best online schedule takes {online:.3f} s on "
                f"{CC.BALANCE_CPUS} CPUs against the ideal {ideal:.3f} s (runs before 2026-12-07 used the "
                f"ideal as the tree's bound).",
            f"- worst shape, of bound, per run: actorscoop {sb.runs_of(by, A, 'value', '')}; "
                f"Ray {sb.runs_of(by, R, 'value', '')}.",
            f"- Target: ≥ {BALANCE_TARGET:g} of the bound on every shape: "
            + judge(by, None if worst is None else worst >= BALANCE_TARGET, f"worst {sb.fmt(worst)}"),
            "- Target: ≥ Ray's on every shape: " + judge(by, beats if worst is not None else None,
                                                       "per shape, of bound", peer_needed=True)]
    return out


def table_recover(by, args):
    A, R = "actorscoop", "ray"
    mib = CC.RECOVER_MIB[1 if args.quick else 0]
    a, r = sb.m(by, A, "value"), sb.m(by, R, "value")
    out = [f"### C5. Recovering a lost {mib} MiB object: its only copy's node killed", "",
           f"3 nodes of 1 CPU; B and C have the resource `b`. A task needing it returns a random "
           f"{mib} MiB uint8 array; the driver on A holds the ref without fetching it, so the only "
           f"copy is on the node that made it. That node's raylet is SIGKILLed, then the driver "
           f"`get`s the array: its owner reruns the task on the node left (lineage) and the driver "
           f"fetches it. Timed from the kill to the array usable. **Lower is better.**", "",
           "| measure | actorscoop | Ray | actorscoop advantage over Ray |", "|---|---:|---:|---:|",
           f"| kill → lost object usable in the driver | {value_or_error(by, A, 'value', 's')} | "
           f"{value_or_error(by, R, 'value', 's')} | {sb.ratio(sb.adv(a, r, 'lower'))} |"]
    for label, key in (("times the task ran", "runs"), ("rebuilt on the other node", "rebuilt_elsewhere"),
                       ("bytes identical (crc32)", "bytes_identical")):
        out.append(f"| {label} | {sb.fmt(sb.m(by, A, key))} | {sb.fmt(sb.m(by, R, key))} | — |")
    hb = {s: ((by.get(s) or {}).get("options") or {}) for s in (A, R)}
    out += ["", f"- seconds per run: actorscoop {sb.runs_of(by, A, 'value', 's')}; "
                f"Ray {sb.runs_of(by, R, 'value', 's')}.",
            f"- Dead-node detection is most of it: actorscoop with `node_timeout={CC.ASC_NODE_TIMEOUT:g}` s; "
            f"Ray {hb[R].get('heartbeat') or 'with its defaults'}.",
            "- Target: recovered, bytes identical (no bound): "
            + judge(by, None if a is None else bool(sb.m(by, A, "bytes_identical")), f"{sb.fmt(a, 's')}")]
    return out


def table_actor(by, args):
    A, R = "actorscoop", "ray"
    q = 1 if args.quick else 0
    out = ["### C6. Calls to an actor on another node", "",
           f"2 nodes; an actor pinned to node B (resource `b`, no CPU held), called by the driver "
           f"on A: {CC.ACTOR_CALLS[q]:,} calls in flight at once (submit all, then get all), then "
           f"{CC.ACTOR_ROUND_TRIPS[q]:,} calls one at a time; after {CC.ACTOR_WARMUP} warm-up calls.", "",
           "| measure | actorscoop | Ray | actorscoop advantage over Ray |", "|---|---:|---:|---:|"]
    for label, key, unit, better in (("calls/s, many in flight", "value", "", "higher"),
                                     ("round trip, median", "rtt_median_ms", "ms", "lower"),
                                     ("round trip, p99", "rtt_p99_ms", "ms", "lower")):
        a, r = sb.m(by, A, key), sb.m(by, R, key)
        out.append(f"| {label} | {value_or_error(by, A, key, unit)} | {value_or_error(by, R, key, unit)} | "
                   f"{sb.ratio(sb.adv(a, r, better))} |")
    out.append(f"| results in order | {sb.fmt(sb.m(by, A, 'results_in_order'))} | "
               f"{sb.fmt(sb.m(by, R, 'results_in_order'))} | — |")
    via, direct = sb.m(by, A, "route_via_head"), sb.m(by, A, "route_direct")
    out += ["", f"- calls/s per run: actorscoop {sb.runs_of(by, A, 'value', '')}; "
                f"Ray {sb.runs_of(by, R, 'value', '')}.",
            f"- actorscoop's timed calls through the head: {sb.fmt(via)}; straight to B: {sb.fmt(direct)}."]
    return out


TABLES = {"throughput": table_throughput, "transfer": table_transfer, "deadnode": table_deadnode,
          "balance": table_balance, "recover": table_recover, "actor": table_actor}

NOTES = [
    "Notes:",
    "- *actorscoop advantage over Ray* = actorscoop/Ray for rates, Ray/actorscoop for times: "
    "above 1× actorscoop is better.",
    "- Every node of a cluster is a separate raylet with its own store and workers, all on "
    "this machine (2 cores shared by all nodes), joined over loopback TCP; the driver is on "
    "the head. Ray runs `ray.cluster_utils.Cluster` with its defaults otherwise (dashboard on "
    "the head, `log_to_driver=False`, `RAY_USAGE_STATS_ENABLED=0`); actorscoop "
    "`actorscoop.testing.Cluster`.",
]


def combine(cells):
    agg = sb.combine(cells)
    ok = [c for c in cells if c.get("status") == "ok"]
    agg["options"] = (ok[0] if ok else (cells[0] if cells else {})).get("options") or {}
    return agg


# --------------------------------------------------------------------------------------
# run, render, write
# --------------------------------------------------------------------------------------

def render(args, info, started, agg):
    mode = "quick smoke run" if args.quick else "full run"
    parts = [f"## {started:%Y-%m-%d %H:%M} UTC — multi-node cluster (issue 6) — {_sysinfo.headline(info)}", "",
             "- Suite: `python benchmarks/cluster_bench.py` (actorscoop against Ray on loopback "
             "clusters; see its docstring).",
             f"- Versions: {_sysinfo.versions_line(info)}; actorscoop measured from the "
             f"{info['actorscoop_source']}",
             f"- Mode: {mode}; every (system, workload) cell ran in {args.reps} fresh process(es), "
             f"systems interleaved; the tables give the **median** over them. Per-cell timeout "
             f"{args.timeout:.0f} s; memory guard {args.mem_limit_gb:g} GiB (summed PSS of the "
             f"cell's process tree).",
             f"- Machine load: 1-min load average {info['loadavg_start'][0]:.2f} at start, "
             f"{info['loadavg_end'][0]:.2f} at end, on {info['logical_cpus']} cores shared with "
             f"other work; the load at the start of each cell is given under each table.", ""]
    for workload in agg:
        parts += TABLES[workload](agg[workload], args) + [""]
        parts += [sb.housekeeping(agg[workload]), ""]
    parts += NOTES + [""]
    return "\n".join(parts)


def append_results(path, text):
    new = not os.path.exists(path)
    with open(path, "a") as f:
        if new:  # run.py's header
            f.write("# actorscoop benchmark results\n\nOne section per run of "
                    "`python benchmarks/run.py`, newest last. See README.md.\n\n")
        f.write(text + "\n")


def main(argv=None):
    args = parse_args(argv)
    snapshot = None
    if args.snapshot:
        sb.ASC_SRC, snapshot = sb.export_snapshot()
    try:
        return _main(args, snapshot)
    finally:
        if snapshot:
            import shutil
            shutil.rmtree(sb.ASC_SRC, ignore_errors=True)
            sb.ASC_SRC = REPO


def _main(args, snapshot):
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    if not _watchdog.become_subreaper():
        print("warning: could not become a child subreaper; orphaned daemons may escape cleanup",
              file=sys.stderr)
    info = _sysinfo.collect(args.python, REPO)
    info["actorscoop_source"] = (f"commit {snapshot} (HEAD exported with git archive)" if snapshot
                                 else f"working tree (git {info['actorscoop_git']})")
    started = dt.datetime.now(dt.timezone.utc)
    info["loadavg_start"] = os.getloadavg()
    print(f"# multi-node cluster (issue 6) — {started:%Y-%m-%d %H:%M} UTC — {_sysinfo.headline(info)}")
    print(f"# {_sysinfo.versions_line(info)}")
    print(f"# actorscoop measured from: {info['actorscoop_source']}")
    print(f"# runners: {args.python}; {args.reps} fresh process(es) per cell; timeout {args.timeout:.0f} s; "
          f"memory guard {args.mem_limit_gb:g} GiB PSS; C1 {args.tasks:,} tasks, C2 {args.transfer_mb} MiB"
          f"{' (quick)' if args.quick else ''}", flush=True)
    cells = {w: {s: [] for s in args.systems} for w in args.workload_list}
    try:
        for workload in args.workload_list:
            for rep in range(args.reps):  # systems interleaved, so load changes hit both
                for system in args.systems:
                    t0 = time.monotonic()
                    print(f"  {workload:10s} {system:10s} rep {rep + 1}/{args.reps} "
                          f"(load {os.getloadavg()[0]:.2f}) ...", end="", flush=True)
                    cell = run_cell(args, system, workload, rep)
                    cells[workload][system].append(cell)
                    text = brief(workload, cell) if cell.get("status") == "ok" else cell.get("error")
                    print(f" {text}  [{time.monotonic() - t0:.0f} s]", flush=True)
    finally:
        _watchdog.kill_tree()
        _watchdog.reap_zombies()
    info["loadavg_end"] = os.getloadavg()
    agg = {w: {s: combine(cs) for s, cs in by.items()} for w, by in cells.items()}
    stamp = f"{started:%Y%m%dT%H%M%S}"
    raw = {"suite": "cluster", "started_utc": started.isoformat(), "quick": args.quick,
           "reps": args.reps, "tasks": args.tasks, "transfer_mib": args.transfer_mb,
           "machine": info, "cells": cells, "aggregate": agg}
    for name in (f"cluster-{stamp}.json", "cluster-latest.json"):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(raw, f, indent=1, default=str)
    text = render(args, info, started, agg)
    print()
    print(text)
    if args.results:
        append_results(args.results, text)
        print(f"appended to {os.path.relpath(args.results, REPO)}")
    print(f"raw numbers: {os.path.relpath(os.path.join(OUT, f'cluster-{stamp}.json'), REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
