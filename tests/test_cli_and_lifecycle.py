"""The command line, address discovery, the launcher, and clean teardown of an
embedded node in a script that never calls init() or shutdown()."""
import json
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import actorscoop as asc

PY = sys.executable


def cli(*args, env=None, timeout=90):
    return subprocess.run([PY, "-m", "actorscoop", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shm_of(pids):
    return [f for f in os.listdir("/dev/shm") if any(f"-{p}-" in f for p in pids)]


def test_script_without_init_cleans_up(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent("""
        import os, psutil, actorscoop as asc
        @asc.remote
        def square(x):
            return x * x
        print(asc.get([square.remote(i) for i in range(20)]))
        me = psutil.Process()
        print("PIDS", [p.pid for p in me.children(recursive=True)])
        print("SESSION", asc._client._context.current().session_dir)
    """))
    out = subprocess.run([PY, str(script)], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert "[0, 1, 4, 9" in out.stdout
    pids = json.loads(out.stdout.split("PIDS ")[1].splitlines()[0])
    session = out.stdout.split("SESSION ")[1].splitlines()[0].strip()
    assert len(pids) >= 3  # raylet, zygote, store, workers
    from conftest import wait_for
    wait_for(lambda: not [p for p in pids if psutil.pid_exists(p)], 15, what="node processes to exit")
    assert not shm_of(pids)
    assert not os.path.exists(os.path.join(session, "sockets"))


def test_start_status_connect_stop(tmp_path):
    env = {**os.environ, "ACTORSCOOP_TMPDIR": str(tmp_path / "t")}
    port = free_port()
    r = cli("start", "--head", "--num-cpus", "1", "--port", str(port), env=env)
    assert r.returncode == 0, r.stderr
    assert f"ACTORSCOOP_ADDRESS=127.0.0.1:{port}" in r.stdout and "actorscoop stop" in r.stdout
    try:
        st = cli("status", "--json", env=env)
        assert st.returncode == 0, st.stderr
        nodes = json.loads(st.stdout)
        assert len(nodes) == 1 and nodes[0]["resources_total"]["CPU"] == 1.0
        raylet_pid = nodes[0]["pid"]
        for how in ({"ACTORSCOOP_ADDRESS": f"127.0.0.1:{port}"}, {"ADDR": "auto"}):
            code = ("import os, actorscoop as asc\n"
                    "asc.init(address=os.environ.get('ADDR'))\n"
                    "f = asc.remote(lambda x: x + 1)\n"
                    "print('RESULT', asc.get(f.remote(41)))\n"
                    "print('NODE', asc.get_runtime_context().get_node_id())\n")
            d = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=90,
                               env={**env, **how})
            assert d.returncode == 0, d.stderr
            assert "RESULT 42" in d.stdout and nodes[0]["node_id"] in d.stdout
        text = cli("status", env=env)
        assert "CPU 0/1" in text.stdout and "WORKERS" in text.stdout and "Tasks:" in text.stdout
        mem = cli("memory", env=env)
        assert mem.returncode == 0 and "total:" in mem.stdout
        again = cli("start", "--head", "--port", str(port), env=env)
        assert again.returncode != 0 and "already serves port" in again.stderr
    finally:
        stop = cli("stop", env=env)
    assert stop.returncode == 0, stop.stderr
    assert "Stopped 1 node" in stop.stdout
    from conftest import exited
    assert exited(raylet_pid)
    assert cli("status", "--json", env=env).stdout.strip() == "[]"


def test_address_auto_without_node_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTORSCOOP_TMPDIR", str(tmp_path / "empty"))
    with pytest.raises(asc.exceptions.ActorScoopError, match="actorscoop start --head"):
        asc.init(address="auto")
    assert not asc.is_initialized()


def test_launcher_runs_a_script_with_n_cpus(tmp_path):
    script = tmp_path / "evolve.py"
    script.write_text(textwrap.dedent("""
        import sys, actorscoop as asc
        f = asc.remote(lambda x: x * 2)
        print("ARGS", sys.argv[1:], "CPUS", asc.cluster_resources()["CPU"],
              "OUT", asc.get([f.remote(i) for i in range(4)]))
    """))
    r = cli("-n", "3", str(script), "a", "b")
    assert r.returncode == 0, r.stderr
    assert "ARGS ['a', 'b'] CPUS 3.0 OUT [0, 2, 4, 6]" in r.stdout
    assert cli("missing.py").returncode == 2


def test_public_names_are_pinned():
    assert sorted(asc.__all__) == sorted([
        "init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "cancel",
        "get_runtime_context", "RuntimeContext", "nodes", "cluster_resources",
        "available_resources", "ObjectRef", "RemoteFunction", "exceptions", "__version__",
        "ActorClass", "ActorHandle", "get_actor", "kill", "method", "timeline", "tqdm", "get_gpu_ids"])
    assert sorted(asc.exceptions.__all__) == sorted([
        "ActorScoopError", "TaskError", "GetTimeoutError", "WorkerCrashedError",
        "TaskCancelledError", "ObjectLostError", "NodeDiedError", "RuntimeNotInitializedError",
        "ActorDiedError", "ObjectStoreFullError", "OutOfMemoryError", "TaskPlacementGroupRemoved",
        "ActorPlacementGroupRemoved", "OwnerDiedError", "ObjectReconstructionFailedError",
        "ObjectReconstructionFailedMaxAttemptsExceededError"])


def test_driver_killed_with_sigkill_takes_its_node_down(tmp_path):
    import signal
    script = tmp_path / "victim.py"
    script.write_text(textwrap.dedent("""
        import sys, time, psutil, actorscoop as asc
        asc.init(num_cpus=1)
        big = asc.put(bytes(10_000_000))
        @asc.remote
        def forever():
            time.sleep(600)
        ref = forever.remote()
        print("PIDS", [p.pid for p in psutil.Process().children(recursive=True)], flush=True)
        time.sleep(600)
    """))
    proc = subprocess.Popen([PY, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        pids = json.loads(line.split("PIDS ")[1])
        from conftest import wait_for
        wait_for(lambda: len([p for p in psutil.Process(proc.pid).children(recursive=True)]) >= 4,
                 30, what="the node's processes")
        pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    from conftest import exited, wait_for
    wait_for(lambda: all(exited(p) for p in pids), 20, what="the orphaned node to exit")
    assert not shm_of(pids)


def test_node_survives_the_init_thread_and_ctrl_c(tmp_path):
    script = tmp_path / "t.py"
    script.write_text(textwrap.dedent("""
        import os, signal, threading, actorscoop as asc
        t = threading.Thread(target=lambda: asc.init(num_cpus=1))
        t.start(); t.join()   # the thread that started the node is gone
        f = asc.remote(lambda: 1)
        print("A", asc.get(f.remote(), timeout=30), flush=True)
        signal.signal(signal.SIGINT, lambda *_: print("driver got SIGINT", flush=True))
        os.killpg(os.getpgrp(), signal.SIGINT)  # what Ctrl-C in a terminal does
        print("B", asc.get(f.remote(), timeout=30), flush=True)
    """))
    r = subprocess.run([PY, str(script)], capture_output=True, text=True, timeout=90,
                       start_new_session=True)
    assert r.returncode == 0, r.stderr
    assert "A 1" in r.stdout and "B 1" in r.stdout


def test_a_shared_or_foreign_tmpdir_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "open"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    monkeypatch.setenv("ACTORSCOOP_TMPDIR", str(root))
    with pytest.raises(asc.exceptions.ActorScoopError, match="not a private directory"):
        asc.init(address="auto")


def test_launcher_exit_codes(tmp_path):
    ok = tmp_path / "ok.py"
    ok.write_text("import sys\nsys.exit(3)\n")
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('script failed')\n")
    assert cli(str(ok)).returncode == 3
    r = cli(str(bad))
    assert r.returncode == 1 and "script failed" in r.stderr


def test_a_zombie_node_counts_as_stopped():
    """A node that exited but was not reaped yet (its parent is busy, or a container's PID 1
    never reaps) is gone: `actorscoop stop` must not wait its whole timeout for it."""
    from actorscoop._common import _session
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        zombie = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while zombie.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert not _session.pid_alive(proc.pid)
        assert _session.pid_alive(os.getpid())
    finally:
        proc.wait()


def test_version_names_the_package_and_what_it_runs_on():
    out = subprocess.run([sys.executable, "-m", "actorscoop", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith(f"actorscoop {asc.__version__} (Python {sys.version.split()[0]}, pyzmq "), line
    assert "\n" not in line
