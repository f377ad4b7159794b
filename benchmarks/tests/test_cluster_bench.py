"""Self-tests of the multi-node suite's machinery (benchmarks/cluster_bench.py), not of
actorscoop: options, cell parsing, node shares, tables and PASS/FAIL, the results file.
Cells are faked from runner output lines; one tiny real actorscoop cell runs at the end.

    python -m pytest benchmarks/tests/test_cluster_bench.py -q
"""

import datetime as dt
import json
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path[:0] = [BENCH, os.path.join(BENCH, "peers_cluster")]

import _cluster_common as CC  # noqa: E402
import _watchdog  # noqa: E402
import cluster_bench as cb  # noqa: E402

QUICK = cb.parse_args(["--quick", "--no-results"])
FULL = cb.parse_args([])


def watch(output, status="exited", returncode=0, elapsed=3.0):
    return {"status": status, "returncode": returncode, "elapsed_s": elapsed,
            "peak_rss_bytes": 2**30, "peak_pss_bytes": 2**29, "peak_procs": 12,
            "stray_killed": 0, "output": output}


def runner_output(system, workload, metrics=None, error=None, teardown=True):
    payload = {"system": system, "workload": workload, "status": "error" if error else "ok",
               "options": {"heartbeat": f"{system} heartbeat"}}
    if error:
        payload["error"] = error
    else:
        payload["metrics"] = metrics
    lines = ["log noise", CC.RESULT_MARK + json.dumps(payload)]
    if teardown:
        lines.append(CC.PROGRESS_MARK + "teardown_done")
    return "\n".join(lines) + "\n"


def cell(system, workload, metrics=None, **kw):
    return cb.make_cell(system, workload, 0, watch(runner_output(system, workload, metrics, **kw)),
                        timeout_s=120, mem_limit_gb=10)


def agg(workload, **by_system):
    """{system: combined} from {system: metrics dict | error string | list of those}."""
    out = {}
    for system, runs in by_system.items():
        runs = runs if isinstance(runs, list) else [runs]
        out[system] = cb.combine([cell(system, workload, error=r) if isinstance(r, str)
                                  else cell(system, workload, r) for r in runs])
    return out


def c1(rate, counts=(25, 25, 25, 25)):
    return {"value": rate, "n_tasks": sum(counts), "total_s": 1.0, "submit_s": 0.1,
            "driver_on_A": True, "warmup_rounds": 2, "warmup_nodes": 4, "warmup_counts": [1, 2, 3, 4],
            **CC.share_metrics(list(counts))}


def c2(rate, identical=True):
    return {"value": rate, "nbytes": 64 * CC.MiB, "return_to_usable_s": 0.1, "return_to_ready_s": 0.05,
            "ready_to_got_s": 0.05, "get_after_wait_GBps": 2 * rate, "bytes_identical": identical,
            "made_on_B": True, "driver_on_A": True}


def c3(done, dead=None):
    m = {"value": done, "retried_s": done - 0.2, "kill_call_s": 0.01, "rounds": 1,
         "warmup_rounds": 1, "warmup_nodes": 4, "unfinished_at_kill": 12,
         "running_on_victim_at_kill": 1, "results_in_order": True, "finished_elsewhere": True,
         "dead_reported": dead is not None, "tasks_A": 6, "tasks_B": 5, "tasks_C": 5}
    if dead is not None:
        m["dead_report_s"] = dead
    return m


def target(lines, prefix):
    hits = [ln for ln in lines if ln.startswith(prefix)]
    assert len(hits) == 1, lines
    return hits[0]


# --- options -------------------------------------------------------------------------

def test_quick_and_full_sizes_and_results_file():
    assert (QUICK.tasks, QUICK.transfer_mb, QUICK.reps, QUICK.results) == (2000, 64, 1, None)
    assert (FULL.tasks, FULL.transfer_mb, FULL.reps) == (20_000, 1024, 3)
    assert FULL.results == os.path.join(BENCH, "RESULTS.md")
    assert cb.parse_args(["--no-results"]).results is None
    assert cb.parse_args(["--quick", "--results", "x.md"]).results == "x.md"


def test_only_workloads_aliases_and_sizes_reach_the_runner():
    args = cb.parse_args(["--quick", "--only", "asc", "--workloads", "c2,deadnode",
                          "--transfer-mb", "8", "--tasks", "300"])
    assert args.systems == ["actorscoop"]
    assert args.workload_list == ["transfer", "deadnode"]  # canonical order
    cmd = cb.runner_cmd(args, "actorscoop", "transfer")
    assert cmd[1].endswith(os.path.join("peers_cluster", "asc_cluster_peer.py"))
    assert cmd[cmd.index("--transfer-mb") + 1] == "8" and cmd[cmd.index("--tasks") + 1] == "300"
    assert cmd[-1] == "--quick"
    with pytest.raises(SystemExit):
        cb.parse_args(["--workloads", "nosuch"])


def test_runner_options_defaults():
    o = CC.parse_args(["--workload", "throughput", "--quick"], default_node_timeout=2.0)
    assert (o.tasks, o.transfer_mib, o.warmup, o.node_timeout) == (2000, 64, 200, 2.0)
    o = CC.parse_args(["--workload", "transfer", "--transfer-mb", "16"])
    assert (o.tasks, o.transfer_mib, o.node_timeout) == (20_000, 16, None)


# --- cells ---------------------------------------------------------------------------

def test_cell_ok_carries_metrics_and_options():
    c = cell("actorscoop", "throughput", c1(5000))
    assert c["status"] == "ok" and c["metrics"]["value"] == 5000
    assert c["options"]["heartbeat"] == "actorscoop heartbeat"
    assert "teardown_problem" not in c and "output" not in c


def test_cell_without_teardown_mark_notes_a_shutdown_problem():
    c = cb.make_cell("ray", "throughput", 0, watch(runner_output("ray", "throughput", c1(1), teardown=False)),
                     timeout_s=120, mem_limit_gb=10)
    assert c["status"] == "ok" and c["teardown_problem"] == "no teardown_done mark"
    out = runner_output("ray", "throughput", c1(1), teardown=False) + CC.PROGRESS_MARK + "teardown_error OSError: x\n"
    c = cb.make_cell("ray", "throughput", 0, watch(out, status="timeout"), timeout_s=120, mem_limit_gb=10)
    assert c["status"] == "ok" and c["teardown_problem"] == "timeout during shutdown"


def test_cell_killed_by_the_memory_guard_or_the_timeout_or_a_crash():
    c = cb.make_cell("actorscoop", "transfer", 0, watch("partial log\n", status="OOM-killed", elapsed=41.7),
                     timeout_s=120, mem_limit_gb=10)
    assert c["status"] == "OOM-killed"
    assert c["error"] == "OOM-killed (tree PSS > 10 GiB) after 42 s"
    c = cb.make_cell("ray", "deadnode", 0, watch("", status="timeout", elapsed=121), timeout_s=120, mem_limit_gb=10)
    assert (c["status"], c["error"]) == ("timeout", "timeout (> 120 s)")
    c = cb.make_cell("ray", "deadnode", 0, watch("a\nSegmentation fault\n\n", returncode=-11),
                     timeout_s=120, mem_limit_gb=10)
    assert c["status"] == "error"
    assert c["error"] == "exit code -11 without a result; last line: Segmentation fault"


def test_runner_error_is_kept():
    c = cell("actorscoop", "deadnode", error="RuntimeError: no task started on the victim node")
    assert c["status"] == "error" and "victim" in c["error"]


# --- pure helpers of the runners -------------------------------------------------------

def test_node_counts_and_shares():
    counts, unknown = CC.node_counts(["a", "b", "a", "zz", "d"], ["a", "b", "c", "d"])
    assert counts == [2, 1, 0, 1] and unknown == 1
    s = CC.share_metrics([10, 0, 5, 5])
    assert (s["tasks_A"], s["tasks_B"], s["nodes_used"]) == (10, 0, 3)
    assert s["share_A_pct"] == 50.0 and s["min_share_pct"] == 0.0 and s["every_node_shares"] is False
    assert CC.share_metrics([25, 25, 25, 25])["every_node_shares"] is True
    assert CC.share_metrics([5, 35, 30, 30])["every_node_shares"] is True     # exactly 5%
    assert CC.share_metrics([4, 36, 30, 30])["every_node_shares"] is False


def test_probe_body_marks_only_on_the_victim(tmp_path):
    assert CC.probe_body(3, "n1", "victim", str(tmp_path), 0.0) == (3, "n1")
    assert CC.markers(str(tmp_path)) == []
    assert CC.markers(str(tmp_path / "missing")) == []
    (tmp_path / "started-3-99").touch()  # task 3 was running on the victim: its retry is instant
    t0 = time.monotonic()
    assert CC.probe_body(3, "n1", "victim", str(tmp_path), 30.0) == (3, "n1")
    assert time.monotonic() - t0 < 5


def test_make_body_checksum():
    import zlib
    arr, crc, node, t = CC.make_body(4096, 1, "nb")
    assert arr.nbytes == 4096 and zlib.crc32(arr) == crc and node == "nb"
    assert CC.make_body(4096, 1, "nb")[1] == crc  # same seed, same bytes


class FakeRef:
    def __init__(self, i, node):
        self.i, self.node, self.ready, self.polls = i, node, True, 0


class FakeCluster:
    """In-process stand-in for an adapter: tasks go round-robin to nodes A-D and finish at
    once, except a probe on the victim, which hangs until the node is killed and is then
    rerun on A after a few polls; the node is reported dead after its kill."""
    name, heartbeat = "fake", "none"

    def __init__(self):
        self.ids, self.next, self.killed = ["a", "b", "c", "d"], 0, set()

    def start(self, nodes, object_store_memory=None, node_timeout=None):
        return self.ids[:len(nodes)]

    def driver_node(self):
        return "a"

    def _place(self, i):
        node = self.ids[self.next % 4]
        self.next += 1
        return FakeRef(i, node)

    def where(self):
        return self._place(None)

    def probe(self, i, victim, marker_dir, short_s):
        r = self._place(i)
        if r.node == victim:
            open(os.path.join(marker_dir, f"started-{i}-1"), "w").close()
            r.ready = False
        return r

    def wait(self, refs, num_returns, timeout):
        for r in refs:
            if not r.ready and r.node in self.killed:
                r.polls += 1
                if r.polls > 2:
                    r.node, r.ready = "a", True
        return [r for r in refs if r.ready], [r for r in refs if not r.ready]

    def get(self, refs, timeout):
        one = lambda r: r.node if r.i is None else (r.i, r.node)  # noqa: E731
        return [one(r) for r in refs] if isinstance(refs, list) else one(refs)

    def kill_node(self, index):
        self.killed.add(self.ids[index])

    def node_dead(self, index):
        return self.ids[index] in self.killed


def test_throughput_workload_counts_every_node():
    o = CC.parse_args(["--workload", "throughput", "--tasks", "400", "--quick"])
    m = CC.w_throughput(FakeCluster(), o)
    assert m["n_tasks"] == 400 and [m[f"tasks_{L}"] for L in "ABCD"] == [100] * 4
    assert m["every_node_shares"] and m["warmup_rounds"] == 1 and m["warmup_nodes"] == 4


def test_deadnode_workload_times_the_retry_of_the_killed_task():
    m = CC.w_deadnode(FakeCluster(), CC.parse_args(["--workload", "deadnode"]))
    assert m["running_on_victim_at_kill"] == CC.PROBES // 4 and m["unfinished_at_kill"] == CC.PROBES // 4
    assert m["finished_elsewhere"] and m["results_in_order"] and m["dead_reported"]
    assert 0 < m["retried_s"] <= m["value"] < 5 and m["dead_report_s"] < 5
    assert m["tasks_A"] == CC.PROBES // 4 * 2


# --- tables and targets ----------------------------------------------------------------

def test_c1_target_needs_the_factor_and_every_node_sharing():
    lines = cb.table_throughput(agg("throughput", actorscoop=c1(4000), ray=c1(2000)), QUICK)
    assert "**PASS** (2.00×" in target(lines, "- Target:")
    lines = cb.table_throughput(agg("throughput", actorscoop=c1(3900), ray=c1(2000)), QUICK)
    assert "**FAIL** (1.95×" in target(lines, "- Target:")
    lines = cb.table_throughput(agg("throughput", actorscoop=c1(9000, (100, 0, 0, 0)), ray=c1(2000)), QUICK)
    assert "**FAIL**" in target(lines, "- Target:") and "not all ran a share" in target(lines, "- Target:")
    assert "actorscoop FAIL (smallest share 0.0%, 1 of 4 nodes used)" in target(lines, "- Check:")
    text = "\n".join(lines)
    assert "| tasks run on node A (head, driver) | 100 (100.0%) | 25 (25.0%) | — |" in text
    assert "| tasks/s | 9,000 /s | 2,000 /s | 4.50× |" in text
    assert "| warm-up rounds until every node had run a task | 2 (4 of 4 nodes) | 2 (4 of 4 nodes) | — |" in text


def test_c1_medians_over_runs():
    by = agg("throughput", actorscoop=[c1(1000), c1(3000), c1(2000)], ray=c1(1000))
    assert by["actorscoop"]["m"]["value"] == 2000 and by["actorscoop"]["n_ok"] == 3
    assert "tasks/s per run: actorscoop 1,000, 3,000, 2,000" in "\n".join(cb.table_throughput(by, FULL))


def test_c1_errors_fail_or_are_not_measured():
    lines = cb.table_throughput(agg("throughput", actorscoop="RuntimeError: a | b", ray=c1(2000)), QUICK)
    assert target(lines, "- Target:").endswith("**FAIL** (actorscoop has no result: RuntimeError: a / b)")
    assert "| tasks/s | error: RuntimeError: a / b |" in "\n".join(lines)
    lines = cb.table_throughput(agg("throughput", actorscoop=c1(4000), ray="TimeoutError: x"), QUICK)
    assert "**NOT MEASURED** (Ray has no result: TimeoutError: x)" in target(lines, "- Target:")
    lines = cb.table_throughput(agg("throughput", actorscoop=c1(4000)), QUICK)
    assert "**NOT MEASURED** (Ray not run)" in target(lines, "- Target:")


def test_c2_targets_rate_ray_and_bytes():
    lines = cb.table_transfer(agg("transfer", actorscoop=c2(1.2), ray=c2(0.3)), QUICK)
    assert "**PASS**" in target(lines, "- Target: ≥ 1 GB/s")
    assert "**PASS** (4.00×)" in target(lines, "- Target: ≥ Ray's")
    lines = cb.table_transfer(agg("transfer", actorscoop=c2(0.5), ray=c2(0.3)), QUICK)
    assert "**FAIL** (0.50 GB/s" in target(lines, "- Target: ≥ 1 GB/s")
    assert "**PASS**" in target(lines, "- Target: ≥ Ray's")
    lines = cb.table_transfer(agg("transfer", actorscoop=c2(5.0, identical=False), ray=c2(0.3)), QUICK)
    assert "**FAIL**" in target(lines, "- Target: ≥ 1 GB/s") and "bytes identical: no" in "\n".join(lines)


def test_c2_memory_guard_kill_is_reported_as_fail():
    oom = cb.make_cell("actorscoop", "transfer", 0, watch("", status="OOM-killed", elapsed=30),
                       timeout_s=300, mem_limit_gb=10)
    by = {"actorscoop": cb.combine([oom]), "ray": cb.combine([cell("ray", "transfer", c2(0.3))])}
    lines = cb.table_transfer(by, FULL)
    text = "\n".join(lines)
    assert "| transfer rate: task's return → array usable in the driver | error: OOM-killed (tree PSS > 10 GiB) after 30 s | 0.30 GB/s |" in text
    for prefix in ("- Target: ≥ 1 GB/s", "- Target: ≥ Ray's"):
        assert "**FAIL** (actorscoop has no result: OOM-killed" in target(lines, prefix)
    assert "### C2. A 1,024 MiB array" in text


def test_c3_reported_with_and_without_a_death_report():
    by = agg("deadnode", actorscoop=c3(1.8, dead=1.5), ray=c3(0.9, dead=15.0))
    lines = cb.table_deadnode(by, QUICK)
    text = "\n".join(lines)
    assert "| kill → node D reported dead | 1.50 s | 15.0 s | 10.00× |" in text
    assert "| kill → the task(s) running on D finished elsewhere | 1.60 s | 0.70 s | 0.44× |" in text
    assert "| kill → all 12 results (on A–C) | 1.80 s | 0.90 s | 0.50× |" in text
    assert "| … of which running on D | 1 | 1 | — |" in text
    assert "**REPORTED**" in target(lines, "- Target:")
    assert "ray heartbeat" in text  # Ray's detection settings come from the runner
    lines = cb.table_deadnode(agg("deadnode", actorscoop=c3(1.8, dead=1.5), ray=c3(0.9)), QUICK)
    assert f"not within {CC.AFTER_KILL_DEADLINE_S:.0f} s" in "\n".join(lines)
    lines = cb.table_deadnode(agg("deadnode", actorscoop="RuntimeError: tasks not all finished"), QUICK)
    assert "**FAIL** (actorscoop has no result" in target(lines, "- Target:")


def test_render_and_append_keep_run_py_format(tmp_path):
    results = {"throughput": agg("throughput", actorscoop=c1(4000), ray=c1(2000)),
               "transfer": agg("transfer", actorscoop=c2(1.2), ray=c2(0.3)),
               "deadnode": agg("deadnode", actorscoop=c3(1.8, 1.5), ray=c3(0.9, 15.0))}
    info = {"cpu_model": "CPU", "logical_cpus": 2, "ram_bytes": 2**34, "kernel": "6", "python": "3.11",
            "packages": {"actorscoop": "0.1", "ray": "2.60.0"}, "actorscoop_git": "abc",
            "actorscoop_source": "working tree (git abc)", "loadavg_start": (1.0, 1, 1),
            "loadavg_end": (2.0, 1, 1)}
    started = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)
    text = cb.render(FULL, info, started, results)
    assert text.startswith("## 2026-11-27 12:00 UTC — multi-node cluster (issue 6) — CPU, 2 cores")
    assert [ln[:6] for ln in text.splitlines() if ln.startswith("### ")] == ["### C1", "### C2", "### C3"]
    assert "- Mode: full run; every (system, workload) cell ran in 3 fresh process(es)" in text
    assert "- Runs (1-min load average at each cell's start): actorscoop 1/1 ok" in text
    path = tmp_path / "RESULTS.md"
    cb.append_results(str(path), text)
    cb.append_results(str(path), text)
    body = path.read_text()
    assert body.startswith("# actorscoop benchmark results\n\nOne section per run of")
    assert body.count("# actorscoop benchmark results") == 1 and body.count("\n## 2026-11-27") == 2


# --- one tiny real cell ----------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(cb.sb.DEFAULT_VENV_PY), reason="bench venv missing")
def test_real_actorscoop_throughput_cell(tmp_path, monkeypatch):
    assert _watchdog.become_subreaper()
    monkeypatch.setattr(cb, "OUT", str(tmp_path))
    args = cb.parse_args(["--quick", "--no-results", "--only", "asc", "--tasks", "300",
                          "--timeout", "90"])
    c = cb.run_cell(args, "actorscoop", "throughput", 0)
    assert c["status"] == "ok", c.get("error") or open(os.path.join(cb.REPO, c["log"])).read()[-3000:]
    m = c["metrics"]
    assert m["n_tasks"] == 300 and sum(m[f"tasks_{L}"] for L in CC.LETTERS) == 300
    assert m["driver_on_A"] is True and m["value"] > 0
    assert not c.get("teardown_problem") and c["stray_killed"] == 0 and not c["leaked_shm"]
