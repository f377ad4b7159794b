"""SCOOP's launcher options (issue 17): each one's effect, observed on real processes
(the nice value in /proc, what a prolog set, the trace and profile files, the log level),
and the division of -n workers over a host list, SCOOP's way. Runs over other hosts are
in test_up.py (they need its ssh stand-in)."""
import argparse
import json
import os
import pstats
import subprocess
import sys
import textwrap

import pytest

from actorscoop._cli import _launch
from actorscoop._cli._hosts import Host
from actorscoop.exceptions import ActorScoopError

PY = sys.executable


def launch(*args, cwd=None, timeout=150, env=None):
    e = {**os.environ, **(env or {})}
    for var in ("SLURM_JOB_NODELIST", "SLURM_NODELIST", "PBS_NODEFILE", "PE_HOSTFILE",
                "ACTORSCOOP_ADDRESS"):
        e.pop(var, None)
    return subprocess.run([PY, "-m", "actorscoop", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=e)


# ---------------------------------------------------------------------- dividing -n
def hosts(*pairs):
    return [Host(name, n) for name, n in pairs]


@pytest.mark.parametrize("n, expected", [
    (5, [("a", 2), ("b", 3)]),             # the counts exactly
    (3, [("a", 2), ("b", 1)]),             # fewer: filled host by host
    (2, [("a", 2)]),                       # the last host gets none
    (1, [("a", 1)]),
    (8, [("a", 4), ("b", 4)]),             # more: one more per host, round robin
    (6, [("a", 3), ("b", 3)]),
])
def test_n_workers_are_divided_over_the_hosts_as_scoop_does(n, expected):
    assert _launch.divide(hosts(("a", 2), ("b", 3)), n) == hosts(*expected)


def args(*argv):
    return _launch.parser().parse_args([*argv, "s.py"])


def test_where_the_hosts_come_from(tmp_path):
    here = len(os.sched_getaffinity(0))
    hf = tmp_path / "hosts"
    hf.write_text("n1 2\nn2:3\n# a comment\nn3\n")
    got, source, n = _launch.plan(args("--hostfile", str(hf)), env={})
    assert got == hosts(("n1", 2), ("n2", 3), ("n3", here)) and n == 5 + here
    assert source == f"hostfile {hf}"
    got, _, n = _launch.plan(args("--hostfile", str(hf), "-n", "4"), env={})
    assert got == hosts(("n1", 2), ("n2", 2)) and n == 4
    got, source, n = _launch.plan(args("--host", "a", "b", "a", "c:3", "--"), env={})
    assert got == hosts(("a", 2), ("b", 1), ("c", 3)) and n == 6 and source == "--host list"
    assert _launch.plan(args("-n", "3"), env={}) == (None, "this machine", 3)
    assert _launch.plan(args(), env={}) == (None, "this machine", here)
    with pytest.raises(ActorScoopError, match="give at least one worker"):
        _launch.plan(args("-n", "0"), env={})
    with pytest.raises(ActorScoopError, match="give at least one worker"):
        _launch.plan(args("--hostfile", str(hf), "-n", "0"), env={})


def test_batch_allocations_without_a_flag(tmp_path):
    slurm = {"SLURM_JOB_NODELIST": "c[1-3]", "SLURM_JOB_CPUS_PER_NODE": "4(x3)",
             "SLURM_NTASKS": "6"}
    got, source, n = _launch.plan(args(), env=slurm)
    assert got == hosts(("c1", 4), ("c2", 2)) and n == 6 and source == "SLURM allocation"
    nodefile = tmp_path / "pbs"
    nodefile.write_text("p1\np1\np2\np2\n")
    got, source, n = _launch.plan(args(), env={"PBS_NODEFILE": str(nodefile), "PBS_NP": "3"})
    assert got == hosts(("p1", 2), ("p2", 1)) and source == "PBS allocation"
    pe = tmp_path / "pe"
    pe.write_text("g1 2 all.q@g1 UNDEFINED\ng2 2 all.q@g2 UNDEFINED\n")
    got, source, n = _launch.plan(args(), env={"PE_HOSTFILE": str(pe), "NSLOTS": "4"})
    assert got == hosts(("g1", 2), ("g2", 2)) and source == "SGE allocation"
    # -n wins over the batch system's count; --address over the allocation.
    assert _launch.plan(args("-n", "1"), env=slurm)[0] == hosts(("c1", 1))
    assert _launch.plan(args("--address", "h:1"), env=slurm)[0] is None


# ---------------------------------------------------------------------- options, observed
PROBE = textwrap.dedent("""
    import json, logging, os, sys
    import actorscoop as scoop
    from actorscoop import futures

    def probe(x):
        scoop.logger.debug("task debug %s", x)
        scoop.logger.info("task info %s", x)
        with open(f"/proc/{os.getpid()}/stat") as f:
            nice = int(f.read().rsplit(")", 1)[1].split()[16])
        return {"nice": nice, "cwd": os.getcwd(), "prolog": os.environ.get("FROM_PROLOG"),
                "pythonpath": os.environ.get("PYTHONPATH"), "debug": scoop.DEBUG,
                "mark": os.environ.get("WRAPPER_MARK")}

    def busy_function_to_profile(x):
        return sum(i * i for i in range(20000 + x))

    if __name__ == "__main__":
        scoop.logger.debug("root debug")
        scoop.logger.info("root info")
        scoop.logger.warning("root warning")
        seen = list(futures.map(probe, range(4), chunksize=1))
        list(futures.map(busy_function_to_profile, range(4), chunksize=1))
        print("ROOT", json.dumps({"debug": scoop.DEBUG, "size": scoop.SIZE,
                                  "mark": os.environ.get("WRAPPER_MARK"),
                                  "python": sys.executable}))
        print("SEEN", json.dumps(sorted(seen, key=json.dumps)))
""")


@pytest.fixture
def probe(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    return tmp_path


def parse(out, key):
    return json.loads(out.split(f"{key} ", 1)[1].splitlines()[0])


@pytest.mark.timeout(150)
def test_prolog_environment_is_what_the_script_exports(tmp_path):
    (tmp_path / "p.sh").write_text("export FROM_PROLOG=1\nNOT_EXPORTED=2\ncd /\n")
    assert _launch.prolog_environment(str(tmp_path / "p.sh")) == {"FROM_PROLOG": "1"}
    (tmp_path / "bad.sh").write_text("echo broken >&2; exit 3\n")
    with pytest.raises(ActorScoopError, match="failed with exit code 3: broken"):
        _launch.prolog_environment(str(tmp_path / "bad.sh"))


@pytest.mark.timeout(150)
def test_worker_settings_reach_the_workers(probe):
    (probe / "prolog.sh").write_text("export FROM_PROLOG=from-the-prolog\n")
    workdir = probe / "work"
    workdir.mkdir()
    r = launch("-n", "2", "--nice", "7", "--path", str(workdir), "--prolog", "prolog.sh",
               "--pythonpath", "/opt/nowhere", "-b", "2", "--backend", "tcp", "probe.py",
               cwd=probe)
    assert r.returncode == 0, r.stderr
    seen = parse(r.stdout, "SEEN")
    assert {json.dumps(s, sort_keys=True) for s in seen} == {json.dumps({
        "nice": 7, "cwd": str(workdir), "prolog": "from-the-prolog",
        "pythonpath": "/opt/nowhere", "debug": False, "mark": None}, sort_keys=True)}
    assert parse(r.stdout, "ROOT")["size"] == 2
    assert "-b/--backend are accepted for SCOOP's command lines and change nothing" in r.stderr


@pytest.mark.timeout(150)
def test_debug_writes_a_trace_per_worker_and_profile_a_merged_profile(probe):
    r = launch("-n", "2", "--debug", "--profile", "probe.py", cwd=probe)
    assert r.returncode == 0, r.stderr
    assert parse(r.stdout, "ROOT")["debug"] is True
    assert all(s["debug"] for s in parse(r.stdout, "SEEN"))
    traces = sorted((probe / "debug").glob("*.jsonl"))
    assert traces, os.listdir(probe)
    rows = [json.loads(line) for t in traces for line in t.read_text().splitlines()]
    assert {row["worker"] for row in rows} == {t.stem for t in traces}
    names = [row["function"] for row in rows]
    assert names.count("probe") == 4 and names.count("busy_function_to_profile") == 4
    assert all(row["end"] >= row["start"] and row["failed"] is False for row in rows)
    merged = probe / "profile" / "merged.prof"
    assert merged.exists() and len(list((probe / "profile").glob("*.prof"))) >= 2
    functions = {f[2] for f in pstats.Stats(str(merged)).stats}
    assert "busy_function_to_profile" in functions and "probe" in functions


@pytest.mark.timeout(150)
@pytest.mark.parametrize("flags, shown, hidden", [
    ([], ["root info", "task info", "root warning"], ["root debug", "task debug"]),
    (["-q"], ["root warning"], ["root info", "task info", "root debug"]),
    (["-v"], ["root debug", "task debug", "root info"], []),
])
def test_log_levels(probe, flags, shown, hidden):
    r = launch("-n", "1", *flags, "probe.py", cwd=probe)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr  # the tasks' lines come through the driver's output
    for text in shown:
        assert text in out, (flags, text, out)
    for text in hidden:
        assert text not in out, (flags, text, out)


@pytest.mark.timeout(150)
def test_log_file(probe):
    r = launch("-n", "1", "--log", "run.log", "probe.py", cwd=probe)
    assert r.returncode == 0, r.stderr
    text = (probe / "run.log").read_text()
    assert "root info" in text and "root warning" in text and "root info" not in r.stderr


@pytest.mark.timeout(150)
def test_python_interpreter_runs_the_script(probe):
    wrapper = probe / "mypython"
    wrapper.write_text(f"#!/bin/sh\nWRAPPER_MARK=wrapped exec {PY} \"$@\"\n")
    wrapper.chmod(0o755)
    r = launch("-n", "1", "--python-interpreter", str(wrapper), "probe.py", cwd=probe)
    assert r.returncode == 0, r.stderr
    assert parse(r.stdout, "ROOT")["mark"] == "wrapped"
    assert {s["mark"] for s in parse(r.stdout, "SEEN")} == {"wrapped"}


def test_help_unknown_options_and_typos(tmp_path):
    r = launch("--help")
    assert r.returncode == 0
    for option in ("--hostfile", "--nice", "--prolog", "--profile", "--tunnel", "-n N",
                   "start,stop,status"):
        assert option in r.stdout, option
    (tmp_path / "s.py").write_text("print('ran')\n")
    r = launch("--hostfil", "x", "s.py", cwd=tmp_path)
    assert r.returncode == 2 and "unknown option --hostfil (did you mean --hostfile?)" in r.stderr
    r = launch("--nicee", "3", "s.py", cwd=tmp_path)
    assert r.returncode == 2 and "did you mean --nice?" in r.stderr
    r = launch("statu")
    assert r.returncode == 2 and "did you mean the command `actorscoop status`?" in r.stderr
    r = launch("--backend", "udp", "s.py", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = launch("--port", "1", "s.py", cwd=tmp_path)
    assert r.returncode == 2 and "need --hostfile F or --host H" in r.stderr
    assert "ran" not in r.stdout


def test_the_parser_takes_scoops_spellings():
    a = _launch.parser().parse_args(
        ["--hosts", "a", "b", "-e", "head.lan", "-p", "/x", "-vv", "--ssh-executable", "myssh",
         "-b", "1", "--backend", "ZMQ", "s.py", "--their", "-n", "1"])
    assert a.hosts == ["a", "b"] and a.head_address == "head.lan" and a.path == "/x"
    assert a.verbose == 2 and a.ssh == "myssh" and a.brokers == 1 and a.backend == "ZMQ"
    assert a.script == "s.py" and a.args == ["--their", "-n", "1"] and a.n is None
    assert isinstance(a, argparse.Namespace)


@pytest.mark.timeout(150)
def test_workers_run_the_scripts_top_level_as_scoop_workers_do(tmp_path):
    """What the script sets up outside its __main__ block (here a module global of a
    helper module, from the script's arguments) is there for its tasks."""
    (tmp_path / "helper.py").write_text(textwrap.dedent("""
        DATA = None

        def load(value):
            global DATA
            DATA = value

        def read(_):
            return DATA
    """))
    (tmp_path / "main.py").write_text(textwrap.dedent("""
        import sys
        import helper
        from actorscoop import futures

        helper.load(sys.argv[1])

        if __name__ == "__main__":
            print("READ", sorted(set(futures.map(helper.read, range(4)))))
    """))
    r = launch("-n", "2", "main.py", "the-data", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "READ ['the-data']" in r.stdout


@pytest.mark.timeout(150)
def test_a_script_without_a_main_block_still_runs(tmp_path):
    """Its top level submits tasks: in the workers (which run the top level first) that
    fails at once with a message saying why, instead of tying the workers up."""
    (tmp_path / "flat.py").write_text(textwrap.dedent("""
        from actorscoop import futures
        print("SUM", sum(futures.map(abs, range(-5, 0))))
    """))
    r = launch("-n", "2", "flat.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "SUM 15" in r.stdout
    assert "put the script's main code under `if __name__ == \"__main__\":`" in r.stdout + r.stderr
