"""Hosts for a multi-node run: hostfiles, batch-system allocations (SLURM, PBS, SGE),
and RemoteLauncher, driven through tests/ssh_standin.py, a real subprocess that plays
ssh on this machine."""
import json
import os
import pickle
import shlex
import socket
import subprocess
import sys
import uuid

import psutil
import pytest

from actorscoop._cli._hosts import (
    Host, HostListError, RemoteCommandError, RemoteLauncher, RemoteTimeoutError,
    batch_system, expand_cpus_per_node, expand_nodelist, hosts_from_environment,
    parse_hostfile, parse_hostfile_text, shell_command,
)
from conftest import exited, wait_for

import ssh_standin

PY = sys.executable
STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ssh_standin.py")
H = Host


# ---------------------------------------------------------------------- hostfiles
@pytest.mark.parametrize("text, hosts", [
    ("a\n", [H("a")]),
    ("a 4\n", [H("a", 4)]),
    ("a:4\n", [H("a", 4)]),                                   # MPICH/MPD machine file
    ("a slots=4\n", [H("a", 4)]),                             # Open MPI
    ("a workers=4\n", [H("a", 4)]),                           # SCOOP's documented form
    ("a\t3\n", [H("a", 3)]),
    ("# cluster\n\n   a 2   # two cores\n\tb\n", [H("a", 2), H("b")]),
    ("a 2\r\nb\r\n", [H("a", 2), H("b")]),
    ("a\nb 1", [H("a"), H("b", 1)]),                          # no final newline
    ("a 2\nb\na 3\n", [H("a", 5), H("b")]),                   # repeated: counts add up
    ("a\na\n", [H("a", 2)]),                                  # repeated bare: one slot each
    ("a\na 4\n", [H("a", 5)]),
    ("b\na\nb\n", [H("b", 2), H("a")]),                       # first-seen order
    ("::1\nfe80::1 2\n", [H("::1"), H("fe80::1", 2)]),        # IPv6: count after a space
    ("me@a 2\n10.0.0.7:3\n", [H("me@a", 2), H("10.0.0.7", 3)]),
    ("node[1-2] 3\n", [H("node1", 3), H("node2", 3)]),        # SLURM notation
    ("n[01-02],gpu1 2\nn01\n", [H("n01", 3), H("n02", 2), H("gpu1", 2)]),
])
def test_hostfile_forms(text, hosts):
    assert parse_hostfile(text) == hosts


@pytest.mark.parametrize("line, reason", [
    ("a 0", "at least 1"),
    ("a -2", "at least 1"),
    ("a two", "'two' is not a whole number"),
    ("a 2.5", "not a whole number"),
    ("a:0", "at least 1"),
    ("a:x", "not a whole number"),
    ("a: 4", "'a:' is not a host name"),
    ("a 2 3", "3 fields"),
    ("a max_slots=4", "unknown setting 'max_slots'"),
    ("a slots=", "not a whole number"),
    ("-oProxyCommand=x", "not starting with '-'"),
    ("-a 2", "not starting with '-'"),
    ("a/b 2", "'a/b' is not a host name"),
    ("node[1-3 2", "'[' not closed"),
    ("node[3-1]", "goes downwards"),
])
def test_hostfile_bad_line_names_file_line_and_format(tmp_path, line, reason):
    path = tmp_path / "hosts"
    path.write_text(f"# header\ngood 2\n{line}\n")
    with pytest.raises(HostListError) as info:
        parse_hostfile(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}, line 3: {line!r}: ")
    assert reason in msg
    assert "Expected one host per line: 'HOST' or 'HOST N_CPUS'" in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n  # nor here\n"])
def test_hostfile_without_hosts(tmp_path, text):
    path = tmp_path / "empty"
    path.write_text(text)
    with pytest.raises(HostListError, match=f"{path} names no host"):
        parse_hostfile(str(path))


def test_hostfile_path_forms(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("a 2\n")
    assert parse_hostfile(path) == parse_hostfile(str(path)) == [H("a", 2)]
    assert parse_hostfile_text("x\n", "inline") == [H("x")]
    with pytest.raises(HostListError, match="inline, line 1"):
        parse_hostfile_text("x y z\n", "inline")


def test_missing_hostfile_says_what_to_give(tmp_path):
    # A str without a newline is a path, never hostfile text: a typo in a file name must
    # not become a host of that name.
    missing = str(tmp_path / "hots.txt")
    with pytest.raises(HostListError, match=r"cannot read hostfile .*hots\.txt.*No such file"):
        parse_hostfile(missing)


# ---------------------------------------------------------------------- SLURM notation
@pytest.mark.parametrize("text, names", [
    ("node1", ["node1"]),
    ("node[1-3]", ["node1", "node2", "node3"]),
    ("node[01-03]", ["node01", "node02", "node03"]),
    ("node[8-10]", ["node8", "node9", "node10"]),             # width of the lower bound
    ("node[08-10]", ["node08", "node09", "node10"]),
    ("node[001-3]", ["node001", "node002", "node003"]),
    ("node[5]", ["node5"]),
    ("node[1,3,5]", ["node1", "node3", "node5"]),
    ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
    ("gpu-[01-03]", ["gpu-01", "gpu-02", "gpu-03"]),          # bracket after a dash
    ("node[1-2]-ib", ["node1-ib", "node2-ib"]),
    ("a,b,c", ["a", "b", "c"]),
    ("node[01-03,07],gpu-[1-2],login1",
     ["node01", "node02", "node03", "node07", "gpu-1", "gpu-2", "login1"]),
    ("r[1-2]n[08-09]", ["r1n08", "r1n09", "r2n08", "r2n09"]),
    ("  node[1-2] ", ["node1", "node2"]),
])
def test_expand_nodelist(text, names):
    assert expand_nodelist(text) == names


@pytest.mark.parametrize("text, reason", [
    ("node[1-3", "'[' not closed"),
    ("node1-3]", "']' without '['"),
    ("node[[1-2]]", "nested '['"),
    ("node[]", "'' in [] of node list"),
    ("node[1,]", "is not N or N-M"),
    ("node[a-b]", "'a-b' in [a-b]"),
    ("node[1-2-3]", "is not N or N-M"),
    ("node[3-1]", "goes downwards"),
    ("a,,b", "empty name"),
    ("", "empty name"),
    ("node[1-99999999]", "too large"),
    ("n[1-1000]x[1-1000]", "more than 100000 names"),
    ("-x", "not starting with '-'"),
    ("a b", "'a b' is not a host name"),
])
def test_expand_nodelist_errors(text, reason):
    with pytest.raises(HostListError) as info:
        expand_nodelist(text)
    assert reason in str(info.value)


@pytest.mark.parametrize("text, counts", [
    ("16(x3),8", [16, 16, 16, 8]),
    ("4", [4]),
    ("2(x2),1(x1),3", [2, 2, 1, 3]),
    (" 8(x2) ", [8, 8]),
])
def test_expand_cpus_per_node(text, counts):
    assert expand_cpus_per_node(text) == counts


@pytest.mark.parametrize("text", ["16(x0)", "x", "16(3)", "", "16,,8", "16x3", "-1"])
def test_expand_cpus_per_node_errors(text):
    with pytest.raises(HostListError, match="is not N or N\\(xK\\)"):
        expand_cpus_per_node(text)


# ---------------------------------------------------------------------- batch systems
def test_slurm_allocation():
    env = {"SLURM_JOB_NODELIST": "node[01-02],login1", "SLURM_JOB_CPUS_PER_NODE": "16(x2),8"}
    assert hosts_from_environment(env) == [H("node01", 16), H("node02", 16), H("login1", 8)]
    assert batch_system(env) == "SLURM"


def test_slurm_without_cpu_counts_lets_nodes_count():
    assert hosts_from_environment({"SLURM_NODELIST": "n[1-2]"}) == [H("n1"), H("n2")]


def test_slurm_job_nodelist_wins_over_the_old_name():
    env = {"SLURM_JOB_NODELIST": "new1", "SLURM_NODELIST": "old1"}
    assert hosts_from_environment(env) == [H("new1")]


def test_slurm_cpu_count_mismatch_names_both_variables():
    env = {"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_CPUS_PER_NODE": "4(x2)"}
    with pytest.raises(HostListError) as info:
        hosts_from_environment(env)
    msg = str(info.value)
    assert "SLURM_JOB_CPUS_PER_NODE='4(x2)' gives 2 CPU counts" in msg
    assert "SLURM_JOB_NODELIST='n[1-3]' names 3 nodes" in msg


def test_slurm_bad_nodelist_says_slurm():
    with pytest.raises(HostListError, match=r"in the SLURM allocation: '\[' not closed"):
        hosts_from_environment({"SLURM_JOB_NODELIST": "n[1-3"})


def test_pbs_nodefile_counts_repeats(tmp_path):
    f = tmp_path / "nodefile"
    f.write_text("n1\nn1\nn2\nn1\n\n")
    env = {"PBS_NODEFILE": str(f), "PBS_ENVIRONMENT": "PBS_BATCH"}
    assert hosts_from_environment(env) == [H("n1", 3), H("n2", 1)]
    assert batch_system(env) == "PBS"


@pytest.mark.parametrize("content, reason", [
    (None, "which cannot be read"),
    ("", "names no host"),
    ("n1\nn2 extra\n", "line 2: 'n2 extra': expected one host name per line"),
    ("-bad\n", "not starting with '-'"),
])
def test_pbs_nodefile_errors(tmp_path, content, reason):
    f = tmp_path / "nodefile"
    if content is not None:
        f.write_text(content)
    with pytest.raises(HostListError) as info:
        hosts_from_environment({"PBS_NODEFILE": str(f)})
    msg = str(info.value)
    assert msg.startswith("PBS_NODEFILE") and repr(str(f)) in msg and reason in msg


def test_sge_pe_hostfile(tmp_path):
    f = tmp_path / "pe_hostfile"
    f.write_text("n1 4 all.q@n1 UNDEFINED\nn2 2 all.q@n2 UNDEFINED\nn1 1 long.q@n1 0,1\n")
    env = {"PE_HOSTFILE": str(f)}
    assert hosts_from_environment(env) == [H("n1", 5), H("n2", 2)]
    assert batch_system(env) == "SGE"


@pytest.mark.parametrize("content, reason", [
    ("n1\n", "line 1: 'n1': expected 'host slots queue processors'"),
    ("n1 x all.q UNDEFINED\n", "expected 'host slots"),
    ("n1 0 all.q UNDEFINED\n", "slots at least 1"),
    ("\n", "names no host"),
])
def test_sge_pe_hostfile_errors(tmp_path, content, reason):
    f = tmp_path / "pe_hostfile"
    f.write_text(content)
    with pytest.raises(HostListError, match="PE_HOSTFILE") as info:
        hosts_from_environment({"PE_HOSTFILE": str(f)})
    assert reason in str(info.value)


@pytest.fixture
def batch_files(tmp_path):
    pbs, sge = tmp_path / "pbs", tmp_path / "sge"
    pbs.write_text("pbs1\n")
    sge.write_text("sge1 1 q UNDEFINED\n")
    return {"SLURM": {"SLURM_JOB_NODELIST": "slurm1"}, "PBS": {"PBS_NODEFILE": str(pbs)},
            "SGE": {"PE_HOSTFILE": str(sge)}}


@pytest.mark.parametrize("present, winner", [
    (["SLURM", "PBS", "SGE"], "SLURM"),
    (["SLURM", "SGE"], "SLURM"),
    (["PBS", "SGE"], "PBS"),
    (["SGE"], "SGE"),
    ([], None),
])
def test_precedence(batch_files, present, winner):
    env = {k: v for name in present for k, v in batch_files[name].items()}
    assert batch_system(env) == winner
    expected = {None: None, "SLURM": [H("slurm1")], "PBS": [H("pbs1", 1)], "SGE": [H("sge1", 1)]}
    assert hosts_from_environment(env) == expected[winner]


def test_empty_variables_count_as_unset():
    env = {"SLURM_JOB_NODELIST": "", "SLURM_NODELIST": "", "PBS_NODEFILE": "", "PE_HOSTFILE": ""}
    assert hosts_from_environment(env) is None


def test_errors_pickle():
    for err in (HostListError("bad"),
                RemoteTimeoutError("n1", ["a", "b c"], 1.5, 42, "out", "err", "via ssh"),
                RemoteCommandError("n1", ["a"], 3, "out", "err", "via ssh")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)


# ---------------------------------------------------------------------- commands (pure)
NASTY = ["a b", "it's", 'say "hi"', "$HOME", "${HOME}", "`id`", "$(id)", "back\\slash",
         "semi;colon && true", "new\nline", "", "*", "~", "tab\there", "ünïcode ✓", "-n",
         "a=b", "'", '"', "#not a comment", "trailing space "]


def test_shell_command_round_trips_through_a_shell_parser():
    env = {"ASC_X": "x y", "ASC_Y": "$HOME 'q'"}
    words = shlex.split(shell_command(["prog", *NASTY], env))
    assert words == ["env", "ASC_X=x y", "ASC_Y=$HOME 'q'", "prog", *NASTY]
    assert shell_command(["prog", "a b"]) == "prog 'a b'"


@pytest.mark.parametrize("argv, env, error", [
    ("python x.py", None, TypeError),
    ([], None, TypeError),
    (["python", 3], None, TypeError),
    (["-oProxyCommand=x"], None, ValueError),
    (["prog"], {"BAD-NAME": "1"}, ValueError),
    (["prog"], {"1X": "1"}, ValueError),
    (["prog"], {"A=B": "1"}, ValueError),
])
def test_shell_command_rejects(argv, env, error):
    with pytest.raises(error):
        shell_command(argv, env)


def test_ssh_option_string_is_split():
    launcher = RemoteLauncher("ssh -p 2222 -o 'ProxyJump=gw 1'")
    assert launcher.ssh == ("ssh", "-p", "2222", "-o", "ProxyJump=gw 1")
    assert launcher.command("n1", ["python3", "-V"], {"K": "v w"}) == \
        ["ssh", "-p", "2222", "-o", "ProxyJump=gw 1", "n1", "env 'K=v w' python3 -V"]
    with pytest.raises(ValueError, match="must name a program"):
        RemoteLauncher("")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "LOCALHOST",
                                  socket.gethostname(), H("localhost", 2)])
def test_this_machine_runs_without_ssh(host):
    assert RemoteLauncher().command(host, ["prog", "a b"]) == ["prog", "a b"]
    name = host.name if isinstance(host, Host) else host
    assert RemoteLauncher(force_ssh=True).command(host, ["prog"]) == ["ssh", name, "prog"]


@pytest.mark.parametrize("host", ["-oProxyCommand=x", "a b", "a;b", "a:b"])
def test_bad_host_is_refused_before_ssh(host):
    with pytest.raises(ValueError, match="cannot ssh to"):
        RemoteLauncher().command(host, ["prog"])


# ---------------------------------------------------------------------- the stand-in itself
@pytest.mark.parametrize("args, options, host, words", [
    (["h", "c"], [], "h", ["c"]),
    (["-p", "2222", "-o", "BatchMode=yes", "h", "a", "b"],
     ["-p", "2222", "-o", "BatchMode=yes"], "h", ["a", "b"]),
    (["-p2222", "-tt", "h", "c"], ["-p2222", "-tt"], "h", ["c"]),
    (["-46v", "-l", "me", "h", "c"], ["-46v", "-l", "me"], "h", ["c"]),
    (["-o", "X", "--", "h", "-c"], ["-o", "X"], "h", ["-c"]),
])
def test_standin_reads_ssh_options(args, options, host, words):
    assert ssh_standin.split_args(args) == (options, host, words)


@pytest.mark.parametrize("args", [[], ["-p"], ["-p", "22"], ["host"]])
def test_standin_usage_errors_exit_255(args):
    r = subprocess.run([PY, STANDIN, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 255 and "usage:" in r.stderr


def test_standin_netns_variable_name():
    assert ssh_standin.netns_variable("node-1.lan") == "SSH_STANDIN_NETNS_NODE_1_LAN"
    assert ssh_standin.netns_variable("me@n1") == "SSH_STANDIN_NETNS_N1"


# ---------------------------------------------------------------------- through the stand-in
@pytest.fixture
def ssh_log(tmp_path, monkeypatch):
    path = tmp_path / "ssh.log"
    monkeypatch.setenv("SSH_STANDIN_LOG", str(path))

    def records():
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return records


@pytest.fixture
def launcher():
    return RemoteLauncher(f"{shlex.quote(PY)} {shlex.quote(STANDIN)} -p 2222 -o BatchMode=yes")


ECHO_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"
ECHO_ENV = "import json, os, sys; print(json.dumps([os.environ.get(k) for k in sys.argv[1:]]))"


def test_arguments_arrive_exactly(launcher, ssh_log):
    r = launcher.run("node-7", [PY, "-c", ECHO_ARGV, *NASTY], timeout=60, check=True)
    assert json.loads(r.stdout) == NASTY


def test_env_vars_reach_the_command(launcher, ssh_log):
    env = {"ASC_A": "x y", "ASC_B": "$HOME 'q' \"r\"", "ASC_EMPTY": ""}
    r = launcher.run("node-7", [PY, "-c", ECHO_ENV, *env, "PATH"], timeout=60, env=env)
    values = json.loads(r.stdout)
    assert values[:3] == list(env.values())
    assert values[3]  # the rest of the environment is the remote shell's


@pytest.mark.parametrize("code", [0, 1, 3, 42])
def test_exit_codes_propagate(launcher, ssh_log, code):
    r = launcher.run("n1", [PY, "-c", f"import sys; sys.exit({code})"], timeout=60)
    assert r.returncode == code


def test_check_names_host_command_code_and_stderr(launcher, ssh_log):
    argv = [PY, "-c", "import sys; sys.stderr.write('disk full\\n'); sys.exit(3)"]
    with pytest.raises(RemoteCommandError) as info:
        launcher.run("n1", argv, timeout=60, check=True)
    err = info.value
    assert isinstance(err, subprocess.CalledProcessError)
    assert (err.host, err.cmd, err.returncode) == ("n1", argv, 3)
    msg = str(err)
    assert "on host 'n1'" in msg and "exited with code 3" in msg and "disk full" in msg
    assert shlex.join(argv) in msg and "via " in msg


def test_log_records_host_and_command(launcher, ssh_log):
    argv, env = [PY, "-c", "pass", "a b"], {"ASC_K": "v"}
    launcher.run("node-7", argv, timeout=60, env=env)
    launcher.run(H("node-8", 4), ["true"], timeout=60)
    records = ssh_log()
    assert [(r["host"], r["command"]) for r in records] == [
        ("node-7", shell_command(argv, env)), ("node-8", "true")]
    assert records[0]["options"] == ["-p", "2222", "-o", "BatchMode=yes"]


def test_local_host_runs_without_ssh(launcher, ssh_log):
    r = launcher.run("localhost", [PY, "-c", ECHO_ENV, "ASC_L", "PATH"], timeout=60,
                     env={"ASC_L": "l v"})
    assert json.loads(r.stdout)[0] == "l v" and json.loads(r.stdout)[1]
    assert ssh_log() == []
    forced = RemoteLauncher(launcher.ssh, force_ssh=True)
    assert forced.run("localhost", ["true"], timeout=60).returncode == 0
    assert [r["host"] for r in ssh_log()] == ["localhost"]


def test_launch_returns_a_popen_with_stdin_closed(launcher, ssh_log):
    proc = launcher.launch("n1", ["cat"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)  # cat would wait forever on an open stdin
    assert (proc.returncode, out, err) == (0, b"", b"")


def _group_members(pgid):
    alive = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return alive


@pytest.mark.parametrize("host, via", [("node-9", "via "), ("localhost", "without ssh")])
def test_timeout_names_host_and_command_and_leaves_nothing(launcher, ssh_log, tmp_path,
                                                           host, via):
    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"]
    with pytest.raises(RemoteTimeoutError) as info:
        launcher.run(host, argv, timeout=1.0)
    err = info.value
    assert isinstance(err, subprocess.TimeoutExpired)
    msg = str(err)
    assert f"on host {host!r} (" in msg and shlex.join(argv) in msg and via in msg
    assert "did not finish within 1 s" in msg
    wait_for(lambda: not _group_members(err.pid), 10, what=f"process group {err.pid} to die")
    if pidfile.exists():  # the command got as far as writing its pid
        pid = int(pidfile.read_text())
        wait_for(lambda: exited(pid), 10, what=f"pid {pid} to die")
    assert not psutil.Process().children(recursive=True)


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"asc-test-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, timeout=30)
    if made.returncode:
        pytest.skip(f"cannot create a network namespace: {made.stderr.decode().strip()}")
    yield name
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


def test_standin_runs_the_command_in_the_hosts_netns(launcher, ssh_log, netns, monkeypatch):
    monkeypatch.setenv("SSH_STANDIN_NETNS_NODE_NS", netns)
    inside = launcher.run("node-ns", ["readlink", "/proc/self/ns/net"], timeout=60, check=True)
    outside = launcher.run("node-other", ["readlink", "/proc/self/ns/net"], timeout=60, check=True)
    assert inside.stdout.strip() == f"net:[{os.stat(f'/run/netns/{netns}').st_ino}]"
    assert outside.stdout.strip() == os.readlink("/proc/self/ns/net")
