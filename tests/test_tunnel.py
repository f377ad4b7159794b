"""``python -m actorscoop --tunnel`` against a real sshd (Debian's openssh-server, run as
root on 127.0.0.1 with a key made for the test): the host's node joins the head through
the ssh remote forward (a port on which nothing else listens), its tasks run, and
everything, the ssh included, is gone afterwards.

The "remote" host is this machine reached through sshd under another name
(``-o HostName=127.0.0.1``), so that the launcher treats it as a host of its own."""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest

from conftest import wait_for

PY = sys.executable
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and os.geteuid() == 0 and shutil.which("ssh")),
    reason="needs openssh-server's sshd and ssh, and root to run sshd (apt-get install "
           "openssh-server openssh-client; .ci/run installs them)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """An sshd on 127.0.0.1 and a free port that accepts the test's key; the ssh command
    line that reaches it."""
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True, timeout=60)
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    port = free_port()
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", "/dev/null", "-p", str(port), "-o", "ListenAddress=127.0.0.1",
         "-o", f"HostKey={d / 'host'}", "-o", f"AuthorizedKeysFile={d / 'authorized_keys'}",
         "-o", "StrictModes=no", "-o", "PermitRootLogin=yes", "-o", "UsePAM=no",
         "-o", "PidFile=none", "-o", "AllowTcpForwarding=yes",
         "-o", "PasswordAuthentication=no"],
        stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # "Server listening on 127.0.0.1 port P."
        assert "Server listening" in line, line + proc.stderr.read()
        ssh = (f"ssh -i {d / 'user'} -p {port} -o StrictHostKeyChecking=no "
               f"-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR "
               f"-o HostName=127.0.0.1")
        yield ssh
    finally:
        proc.terminate()
        proc.wait(30)


SCRIPT = textwrap.dedent("""
    import json, os
    import actorscoop as scoop
    from actorscoop import futures
    from actorscoop._common import _session

    def where(_):
        return os.environ.get("FROM_PROLOG"), scoop.IS_ORIGIN

    if __name__ == "__main__":
        joined = [n.get("cluster") for n in _session.list_nodes() if not n.get("head")]
        print("JOINED", json.dumps(joined), flush=True)
        print("HEAD", os.environ["ACTORSCOOP_ADDRESS"], flush=True)
        print("TASKS", json.dumps(sorted(set(futures.map(where, range(6))))), flush=True)
        print("PIDS", json.dumps([n["pid"] for n in _session.list_nodes()]), flush=True)
""")


@pytest.mark.timeout(180)
def test_tunnel_through_a_real_sshd(sshd, tmp_path):
    root, home = tmp_path / "root", tmp_path / "home"
    (tmp_path / "remote.sh").write_text(  # the host's own settings, as a prolog gives them
        f"export ACTORSCOOP_TMPDIR={root}\nexport ACTORSCOOP_HOME={home}\n"
        "export FROM_PROLOG=via-the-tunnel\n")
    (tmp_path / "hosts").write_text("tunnelhost 2\n")
    (tmp_path / "s.py").write_text(SCRIPT)
    env = {**os.environ, "ACTORSCOOP_TMPDIR": str(root), "ACTORSCOOP_HOME": str(home)}
    env.pop("ACTORSCOOP_ADDRESS", None)
    before = {p.pid for p in psutil.process_iter()}
    r = subprocess.run([PY, "-m", "actorscoop", "--hostfile", "hosts", "-n", "2", "--tunnel",
                        "--ssh", sshd, "--python", PY, "--bind", "127.0.0.1",
                        "--prolog", "remote.sh", "s.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    head_port = int(out.split("HEAD ")[1].split()[0].rpartition(":")[2])
    (joined,) = json.loads(out.split("JOINED ")[1].splitlines()[0])
    host, _, port = joined.rpartition(":")
    # The node joined a port of its host's loopback that only the ssh forward serves.
    assert host == "127.0.0.1" and int(port) != head_port, (joined, head_port)
    assert json.loads(out.split("TASKS ")[1].splitlines()[0]) == [["via-the-tunnel", False]]
    assert "tunnelhost: ok, node" in out and "Stopped the cluster" in out
    pids = json.loads(out.split("PIDS ")[1].splitlines()[0])

    def left():
        new = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.pid not in before]
        return [p.pid for p in new if p.pid in pids or any(
            str(tmp_path) in part for part in (p.info["cmdline"] or []))]
    wait_for(lambda: not left(), 30, what="the nodes and the tunnel's ssh to exit")
