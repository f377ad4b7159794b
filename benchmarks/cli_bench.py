#!/usr/bin/env python
"""How long the command line takes to give a user a cluster (issue 18), side by side with Ray.

    python benchmarks/cli_bench.py [--reps 3] [--json FILE]

- ``actorscoop start --head``: the command's start to its exit (it returns once the head
  takes drivers and joins), and ``ray start --head`` likewise;
- a second node joining: ``actorscoop start --address HEAD --token T`` (returns once the head
  counted it in), ``ray start --address HEAD``;
- ``actorscoop stop``: until every node of this machine stopped (Ray: its processes are
  killed by pid at the end; ``ray stop`` kills by name, which this machine's rules forbid).

Each repetition uses its own port and directories. The script is a child subreaper
(_watchdog.py): every process a command leaves behind is found and killed by pid.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import _watchdog  # noqa: E402

import _venv  # noqa: E402  (this directory is sys.path[0])
BENCH_PY = _venv.PYTHON


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, env, timeout=120):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return time.perf_counter() - t0, out


def actorscoop_round(py, tmp):
    env = dict(os.environ, ACTORSCOOP_TMPDIR=tmp, HOME=tmp)
    port = free_port()
    cli = [py, "-m", "actorscoop"]
    head_s, out = timed([*cli, "start", "--head", "--port", str(port), "--num-cpus", "1", "--json"], env)
    if out.returncode != 0:
        return {"error": out.stderr[-300:]}
    # the token is in the head's credentials file (0600, under HOME)
    from actorscoop.transport import _secure
    home = os.environ.get("HOME")
    os.environ["HOME"] = tmp
    try:
        token = _secure.load(f"cluster-{port}").token
    finally:
        if home is not None:
            os.environ["HOME"] = home
    join_s, out = timed([*cli, "start", "--address", f"127.0.0.1:{port}", "--token", token,
                         "--num-cpus", "1", "--json"], env)
    if out.returncode != 0:
        return {"error": out.stderr[-300:], "head_s": head_s}
    stop_s, out = timed([*cli, "stop"], env)
    return {"head_s": head_s, "join_s": join_s, "stop_s": stop_s}


def ray_round(py, tmp):
    if not os.path.exists(py):
        return {"error": f"no bench venv python at {py}"}
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HOME=tmp)
    port = free_port()
    ray = [py, "-m", "ray.scripts.scripts"]
    head_s, out = timed([*ray, "start", "--head", "--port", str(port), "--num-cpus", "1",
                         "--include-dashboard=false", "--temp-dir", os.path.join(tmp, "ray")], env)
    if out.returncode != 0:
        return {"error": out.stderr[-300:]}
    join_s, out = timed([*ray, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1"], env)
    res = {"head_s": head_s, "join_s": join_s}
    if out.returncode != 0:
        res["error"] = out.stderr[-300:]
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", default="actorscoop,ray")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    _watchdog.become_subreaper()
    import compileall  # as pip install would have
    compileall.compile_dir(os.path.join(REPO, "actorscoop"), quiet=1)
    systems = args.only.split(",")
    rows = {s: [] for s in systems}
    try:
        for _ in range(args.reps):  # interleaved: both see the same machine
            for system in systems:
                with tempfile.TemporaryDirectory(prefix="asc-cli-") as tmp:
                    if system == "actorscoop":
                        rows[system].append(actorscoop_round(sys.executable, tmp))
                    else:
                        rows[system].append(ray_round(BENCH_PY, tmp))
                    _watchdog.kill_tree()  # whatever a command left running (Ray's daemons)
                    _watchdog.reap_zombies()
                print(system, rows[system][-1], flush=True)
    finally:
        _watchdog.kill_tree()
        _watchdog.reap_zombies()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"\n## Command line start-up (issue 18) — {stamp}\n")
    print("| step | actorscoop (median) | Ray (median) | actorscoop advantage | target |")
    print("|---|---:|---:|---:|---|")
    for key, label, target in (("head_s", "`start --head` ready", 0.5), ("join_s", "a node joins", 0.5),
                               ("stop_s", "`stop`", None)):
        med = {}
        for system in systems:
            vals = [r[key] for r in rows[system] if key in r]
            med[system] = statistics.median(vals) if vals else None
        a, r = med.get("actorscoop"), med.get("ray")
        adv = f"{r / a:.1f}×" if a and r else "–"
        verdict = "" if target is None or a is None else f"≤ {target} s: {'PASS' if a <= target else 'FAIL'}"
        print(f"| {label} | {f'{a:.2f} s' if a else '–'} | {f'{r:.2f} s' if r else '–'} | {adv} | {verdict} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "time": stamp}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
