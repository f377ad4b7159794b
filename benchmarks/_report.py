"""Turn cell results into markdown tables with the targets under each one."""

from __future__ import annotations

from _spec import ABSOLUTE, SYSTEMS, TARGETS, WORKLOADS

GiB = 2**30


def fmt_value(value: float, unit: str) -> str:
    if unit == "tasks/s":
        return f"{value:,.0f}"
    if unit == "µs":
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell_text(cell: dict) -> str:
    status = cell["status"]
    if status == "ok":
        return fmt_value(cell["value"], cell["unit"])
    if status == "timeout":
        return f"timeout (>{cell['timeout_s']:.0f} s)"
    if status == "OOM-killed":
        return (f"OOM-killed (tree {cell.get('mem_metric', 'rss').upper()} > "
                f"{cell['mem_limit_bytes'] / GiB:.0f} GiB)")
    if status == "n/a":
        return "n/a (cannot nest)"
    return f"error: {cell.get('error', '?')}"


def advantage(workload: str, asc: dict | None, peer: dict) -> float | None:
    """How many times better actorscoop is than ``peer`` (>1: actorscoop better)."""
    if not asc or asc["status"] != "ok" or peer["status"] != "ok":
        return None
    if asc["value"] <= 0 or peer["value"] <= 0:
        return None
    if WORKLOADS[workload]["better"] == "higher":
        return asc["value"] / peer["value"]
    return peer["value"] / asc["value"]


def notes(workload: str, cell: dict) -> str:
    parts = []
    extra = cell.get("extra") or {}
    if cell["status"] == "ok":
        if workload == "roundtrip":
            parts.append(f"p90 {extra['p90_us']:,.0f} µs, p99 {extra['p99_us']:,.0f} µs")
        elif workload == "throughput":
            parts.append(f"median of {extra['reps']} × {extra['n_tasks']:,}; "
                         f"submit phase {min(extra['submit_phase_s']):.2f} s")
            if "distinct_pids" in extra:
                where = "driver only" if extra["distinct_pids"] == 1 and extra["pids_include_driver"] \
                    else f"{extra['distinct_pids']} worker pid(s)" + (
                        " incl. driver" if extra["pids_include_driver"] else "")
                parts.append(f"200 probe tasks ran in: {where}")
        elif workload.startswith("fib"):
            parts.append(f"{extra['tasks_per_run']:,} tasks, median of {len(extra['runs_s'])} "
                         f"run(s), {extra['tasks_per_s']:,.0f} tasks/s")
        elif workload == "init":
            runs = cell.get("runs_s") or []
            if len(runs) > 1:
                parts.append(f"median of {len(runs)} fresh processes")
            for key, label in (("init_to_first_result_s", "init()→first result"),
                               ("whole_process_s", "whole process"), ("shutdown_s", "shutdown")):
                if extra.get(key) is not None:
                    parts.append(f"{label} {extra[key]:.3f} s")
    elif cell.get("lower_bound_s"):
        parts.append(f"killed ≥ {cell['lower_bound_s']:.0f} s into the timed run")
    if cell.get("peak_pss_bytes"):
        parts.append(f"peak {cell['peak_pss_bytes'] / GiB:.2f} GiB PSS "
                     f"({cell['peak_rss_bytes'] / GiB:.2f} GiB RSS) in {cell['peak_procs']} procs")
    elif cell.get("peak_rss_bytes"):
        parts.append(f"peak {cell['peak_rss_bytes'] / GiB:.2f} GiB RSS in "
                     f"{cell['peak_procs']} procs")
    if (cell.get("cpu_busy_before_pct") or 0) > 25:
        parts.append(f"machine {cell['cpu_busy_before_pct']:.0f}% busy at start")
    if cell.get("teardown_problem"):
        parts.append(f"shutdown problem: {cell['teardown_problem']}")
    if cell.get("stray_killed"):
        parts.append(f"{cell['stray_killed']} stray pids killed after exit")
    return "; ".join(parts)


def table(workload: str, cells: dict) -> str:
    spec = WORKLOADS[workload]
    asc = cells.get("actorscoop")
    lines = [f"### {spec['title']}", "",
             f"{spec['what']} **{spec['better'].capitalize()} is better.** "
             f"The ratio column is how many times better actorscoop is than that "
             f"system (>1× means actorscoop wins).", "",
             "| system | value | unit | actorscoop advantage | notes |",
             "|---|---:|---|---:|---|"]
    for key, cell in cells.items():
        adv = advantage(workload, asc, cell)
        adv_text = "—" if adv is None else ("1× (self)" if key == "actorscoop" else f"{adv:.2f}×")
        lines.append(f"| {SYSTEMS[key]['label']} | {cell_text(cell)} | {spec['unit']} | "
                     f"{adv_text} | {notes(workload, cell)} |")
    lines.append("")
    lines.extend(target_lines(workload, cells))
    return "\n".join(lines)


def target_lines(workload: str, cells: dict) -> list[str]:
    out = []
    asc = cells.get("actorscoop")
    for wl, peer_key, factor, text in TARGETS:
        if wl != workload:
            continue
        peer = cells.get(peer_key)
        out.append(f"- Target: {text}: **{judge(workload, asc, peer, factor)}**")
    for wl, key, limit, text in ABSOLUTE:
        if wl != workload:
            continue
        value = ((asc or {}).get("extra") or {}).get(key) if asc and asc["status"] == "ok" else None
        verdict = "NOT MEASURED" if value is None else \
            f"{'PASS' if value <= limit else 'FAIL'} ({value:.3f} s)"
        out.append(f"- Target: {text}: **{verdict}**")
    aim = cells.get("scoop")
    if workload.startswith("fib") and aim is not None:
        adv = advantage(workload, asc, aim)
        out.append(f"- Aim: SCOOP speed: actorscoop is "
                   f"{'n/a' if adv is None else f'{adv:.2f}× SCOOP'} (>1× = faster than SCOOP)")
    return out or ["- (no target for this workload)"]


def judge(workload: str, asc: dict | None, peer: dict | None, factor: float) -> str:
    if peer is None:
        return "NOT MEASURED (peer not run)"
    if not asc or asc["status"] != "ok":
        return "FAIL (actorscoop has no result)"
    adv = advantage(workload, asc, peer)
    if adv is not None:
        verdict = "PASS" if adv >= factor else "FAIL"
        return f"{verdict} ({adv:.2f}×, needs {factor:.2f}×)"
    bound = peer.get("lower_bound_s")
    if bound and WORKLOADS[workload]["better"] == "lower":
        if bound / asc["value"] >= factor:
            return f"PASS (peer {peer['status']}; ≥ {bound / asc['value']:.1f}× from its lower bound)"
        return (f"UNDECIDED (peer {peer['status']}; lower bound only "
                f"{bound / asc['value']:.1f}×, needs {factor:.2f}×)")
    return f"UNDECIDED (peer: {cell_text(peer)})"
