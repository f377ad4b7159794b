"""Progress bars: ``progress=`` of get/wait and futures.map, and ``actorscoop.tqdm`` in
tasks drawn by the driver. The terminal tests run a driver on a pseudo-terminal and read
what it drew, through a terminal emulator (pyte) for the final screen."""
import concurrent.futures
import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time

import pyte
import pytest

import actorscoop as asc
from actorscoop._driver import _remote_output
from actorscoop import futures
from actorscoop._driver._remote_output import RemoteOutput
from actorscoop.protocol._output import encode_bar_state as encode_state
from actorscoop._client._tqdm import UPDATE_INTERVAL
from actorscoop.exceptions import GetTimeoutError
from conftest import wait_for

COLS, ROWS = 120, 40
#: a bar mid-way: count, elapsed<ETA and a rate, e.g. "5/10 [00:00<00:00, 12.3it/s]"
BAR_FIELDS = r"\d+/{total} \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(it/s|s/it)\]"


class Terminal:
    """A script run with a pseudo-terminal as its stdin, stdout and stderr."""

    def __init__(self, script, *args, env=None):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.proc = subprocess.Popen([sys.executable, str(script), *map(str, args)],
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                                     env={**os.environ, **(env or {})})
        os.close(slave)
        self.output = b""
        self.eof = False

    def read_until(self, pattern, timeout):
        """Read until the output matches ``pattern`` (bytes regex; None: until the end)."""
        deadline = time.monotonic() + timeout
        while not (pattern is not None and re.search(pattern, self.output)):
            if self.eof:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if select.select([self.master], [], [], left)[0]:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: every writer of the terminal has closed it
                    data = b""
                self.eof = not data
                self.output += data
        found = re.search(pattern, self.output) if pattern is not None else self.eof
        assert found, (f"no {pattern!r} within {timeout} s (exit code {self.proc.poll()}); "
                       f"the terminal got:\n{self.output.decode(errors='replace')[-3000:]}")
        return found

    def finish(self, timeout=60):
        self.read_until(None, timeout)
        code = self.proc.wait(10)
        os.close(self.master)
        assert code == 0, self.output.decode(errors="replace")[-3000:]
        return self.text()

    def text(self):
        return self.output.decode("utf-8", "replace")

    def screen(self):
        """The lines a terminal shows at the end (with the scrolled-off ones above)."""
        screen = pyte.HistoryScreen(COLS, ROWS, history=1000)
        pyte.ByteStream(screen).feed(self.output)
        lines = [("".join(c.data for c in row.values()) if isinstance(row, dict) else
                  "".join(row[x].data for x in range(COLS))) for row in screen.history.top]
        return [line.rstrip() for line in lines + screen.display if line.strip()]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        try:
            os.close(self.master)
        except OSError:
            pass


@pytest.fixture
def terminal():
    started = []

    def start(script, *args, **kwargs):
        t = Terminal(script, *args, **kwargs)
        started.append(t)
        return t
    yield start
    for t in started:
        t.kill()


def _script(tmp_path, body):
    path = tmp_path / "driver.py"
    path.write_text(textwrap.dedent(body))
    return path


def _bar_line(lines, text):
    found = [line for line in lines if text in line]
    assert found, f"no line with {text!r} on the screen:\n" + "\n".join(lines)
    return found[-1]


# ---------------------------------------------------------------------- on a terminal
def test_map_bar_advances_as_results_arrive(tmp_path, terminal):
    """Half the calls finish, the rest wait on a lock this test holds: the bar shows
    5/10 with a rate and an ETA before any of the rest can finish, then 10/10."""
    gate = tmp_path / "gate"
    gate.write_text("")
    script = _script(tmp_path, """
        import fcntl, sys
        import actorscoop as asc
        from actorscoop import futures

        def work(i, gate):
            if i >= 5:  # blocks until the test lets go of its lock
                with open(gate) as f:
                    fcntl.flock(f, fcntl.LOCK_SH)
            return i

        asc.init(num_cpus=2)
        print("SUM", sum(futures.map(work, range(10), [sys.argv[1]] * 10, chunksize=1,
                                     progress={"desc": "squares"})))
    """)
    with open(gate) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        t = terminal(script, gate)
        t.read_until(rb"squares: +50%.*" + BAR_FIELDS.format(total=10).encode(), 60)
    t.finish()
    line = _bar_line(t.screen(), "squares:")
    assert re.search(r"squares: 100%\|█+\| 10/10 \[\d\d:\d\d<00:00, +[\d.]+it/s\]", line), line
    assert "SUM 45" in t.screen()


def test_get_bar_and_remote_bars_drawn_by_the_driver(tmp_path, terminal):
    script = _script(tmp_path, """
        import actorscoop as asc

        @asc.remote
        def inner(n, desc):
            for _ in asc.tqdm(range(n), desc=desc):
                pass
            print("inner done", n)
            return n

        asc.init(num_cpus=2)
        refs = [inner.remote(50, "loop-a"), inner.remote(30, "loop-b")]
        print("GOT", asc.get(refs, progress={"desc": "tasks", "unit": "task"}))
    """)
    t = terminal(script)
    text = t.finish()
    lines = t.screen()
    assert "GOT [50, 30]" in lines
    for desc, n in (("loop-a", 50), ("loop-b", 30)):
        line = _bar_line(lines, f" {desc}:")
        assert re.search(rf"^\(inner pid=\d+\) {desc}: 100%\|█+\| {n}/{n} \[", line), line
        assert re.search(rf"{desc}:.*" + BAR_FIELDS.format(total=n), text)
    assert re.search(r"tasks: 100%\|█+\| 2/2 \[\d\d:\d\d<00:00, +[\d.]+task/s\]",
                     _bar_line(lines, "tasks:"))
    assert any(re.match(r"\(inner pid=\d+\) inner done 50$", line) for line in lines), lines
    assert "@@actorscoop-tqdm@@" not in text  # the bars' wire format never shows


def test_remote_bar_of_a_task_on_another_node(tmp_path, terminal):
    """The bar's states travel with the task's output: node 2 -> head -> driver."""
    script = _script(tmp_path, """
        import actorscoop as asc
        from actorscoop.testing import Cluster

        @asc.remote(resources={"far": 1})
        def far_away(n):
            bar = asc.tqdm(total=n, desc="far-loop")
            for _ in range(n):
                bar.update()
            bar.close()
            return asc.get_runtime_context().get_node_id()

        with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"far": 1}}]) as c:
            asc.init(address=c.address)
            print("NODE", asc.get(far_away.remote(40), timeout=60)[:8])
            asc.shutdown()
    """)
    t = terminal(script)
    t.finish(90)
    lines = t.screen()
    node = next(line.split()[1] for line in lines if line.startswith("NODE "))
    line = _bar_line(lines, "far-loop:")
    assert re.search(rf"^\(far_away pid=\d+, node={node}\) far-loop: 100%\|█+\| 40/40 \[", line), line


def test_print_in_the_driver_goes_above_remote_bars(tmp_path, terminal):
    """While a task's bar is drawn, the driver prints: each line lands above the bar,
    whole, and the bar is drawn again below."""
    script = _script(tmp_path, """
        import fcntl, sys
        import actorscoop as asc
        from conftest import wait_for

        @asc.remote
        def hold(gate):
            bar = asc.tqdm(total=3, desc="held-bar")
            bar.update(1)
            with open(gate) as f:  # until the driver lets go of its lock
                fcntl.flock(f, fcntl.LOCK_SH)
            bar.update(2)
            bar.close()

        asc.init(num_cpus=1)
        with open(sys.argv[1]) as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            ref = hold.remote(sys.argv[1])
            output = asc._client._context.current()._output
            wait_for(lambda: output._bars, 30, what="the task's bar")
            for i in range(3):
                print("LINE", i)
        asc.get(ref)
        print("END")
    """)
    gate = tmp_path / "gate"
    gate.write_text("")
    t = terminal(script, gate, env={"PYTHONPATH": os.path.dirname(__file__)})
    t.finish()
    lines = t.screen()
    assert [x for x in lines if "LINE" in x] == ["LINE 0", "LINE 1", "LINE 2"], lines
    assert re.search(r"^\(hold pid=\d+\) held-bar: 100%\|█+\| 3/3 \[", _bar_line(lines, "held-bar")), lines
    assert lines[-1] == "END", lines


def test_plain_tqdm_in_a_task_shows_its_last_state(tmp_path, terminal):
    """tqdm itself in a task is not drawn live, but its redraws do not garble the
    driver's terminal: its final state shows once, with the task's prefix."""
    script = _script(tmp_path, """
        import actorscoop as asc
        from tqdm import tqdm

        @asc.remote
        def plain():
            for _ in tqdm(range(20), desc="plain-bar", mininterval=0):
                pass
            return 1

        asc.init(num_cpus=1)
        print("GOT", asc.get(plain.remote()))
    """)
    t = terminal(script)
    t.finish()
    lines = t.screen()
    line = _bar_line(lines, "plain-bar")
    assert re.search(r"^\(plain pid=\d+\) plain-bar: 100%\|█+\| 20/20 \[", line), line
    assert len([x for x in lines if "plain-bar" in x]) == 1, lines


# ---------------------------------------------------------------------- in this process
def test_progress_values_are_checked_before_any_task_runs(node, tmp_path):
    marker = tmp_path / "ran"

    def touch(x):
        marker.write_text("x")
        return x
    with pytest.raises(TypeError, match="progress must be True, False or a dict"):
        futures.map(touch, range(3), progress="yes")
    with pytest.raises(TypeError, match="tqdm refused.*no_such_option"):
        futures.map(touch, range(3), progress={"no_such_option": 1})
    with pytest.raises(TypeError, match="progress must be"):
        asc.get([asc.put(1)], progress=1)
    assert not marker.exists()


def test_get_and_wait_with_progress_return_what_they_would_without(node, capsys):
    @asc.remote
    def double(x):
        return 2 * x
    refs = [double.remote(i) for i in range(20)]
    assert asc.get(refs, progress=True) == [2 * i for i in range(20)]
    assert asc.get(refs[3], progress=True) == 6
    ready, not_ready = asc.wait(refs, num_returns=20, timeout=30, progress={"desc": "waiting"})
    assert ready == refs and not_ready == []
    err = capsys.readouterr().err
    assert "20/20" in err and "waiting: 100%" in err


class Gate:
    """A lock file: while the test holds it, tasks that call ``wait_at(path)`` wait."""

    def __init__(self, path):
        self.path = str(path)
        open(self.path, "w").close()
        self._held = open(self.path)
        fcntl.flock(self._held, fcntl.LOCK_EX)

    def let_go(self):
        if not self._held.closed:
            self._held.close()


def wait_at(path, value=None):
    with open(path) as f:
        fcntl.flock(f, fcntl.LOCK_SH)
    return value


@pytest.fixture
def gate(tmp_path):
    g = Gate(tmp_path / "gate")
    yield g
    g.let_go()


def test_get_bar_advances_as_values_arrive(node, gate):
    """Three of five tasks finish, two wait on a lock this test holds: the bar drawn
    by a get() still waiting shows 3/5."""
    @asc.remote
    def maybe_blocked(i, path):
        return wait_at(path, i) if i >= 3 else i
    drawn = io.StringIO()
    got = []
    refs = [maybe_blocked.remote(i, gate.path) for i in range(5)]
    getter = threading.Thread(target=lambda: got.append(
        asc.get(refs, timeout=60, progress={"file": drawn, "desc": "five"})))
    getter.start()
    wait_for(lambda: "3/5" in drawn.getvalue(), 30, what="the bar at 3/5")
    assert not got
    gate.let_go()
    getter.join(60)
    assert got == [[0, 1, 2, 3, 4]]
    assert re.search(r"five: 100%.*5/5", drawn.getvalue())


def test_get_with_progress_times_out_like_get(node, gate):
    ref = asc.remote(wait_at).remote(gate.path, 1)
    with pytest.raises(GetTimeoutError, match="timed out after 0.3 s with 1 of 1"):
        asc.get([ref], timeout=0.3, progress=True)
    ready, not_ready = asc.wait([ref], timeout=0.3, progress=True)
    assert (ready, not_ready) == ([], [ref])
    gate.let_go()
    assert asc.get(ref, timeout=30) == 1


def test_map_with_progress_times_out_like_map(node, gate):
    start = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError, match="not ready 2.0 s after"):
        list(futures.map(wait_at, [gate.path], timeout=2.0, progress=True))
    assert time.monotonic() - start < 3.9  # the bar's waits count in the timeout


def test_map_relatives_with_progress(node, capsys):
    assert sorted(futures.map_as_completed(abs, range(-5, 5), progress=True)) == \
        sorted(abs(i) for i in range(-5, 5))
    assert futures.mapReduce(abs, max, range(-7, 3), progress={"desc": "reducing"}) == 7
    assert futures.mapScan(abs, max, [1, -3, 2], progress=True) == [1, 3, 3]
    with futures.Executor() as ex:
        assert list(ex.map(abs, iter(range(-3, 0)), progress={"desc": "executor"})) == [3, 2, 1]
    err = capsys.readouterr().err
    assert "10/10" in err and "reducing: 100%" in err and "3/3" in err
    assert re.search(r"executor: 3it \[", err)  # an iterator has no len(): count and rate


def test_map_and_get_in_a_task_draw_their_bars_in_the_driver(node, capsys):
    @asc.remote
    def leaf(x):
        return x

    @asc.remote
    def outer():
        total = sum(futures.map(abs, range(-30, 0), progress={"desc": "nested-map"}))
        return total + sum(asc.get([leaf.remote(i) for i in range(12)],
                                   progress={"desc": "nested-get"}))
    assert asc.get(outer.remote(), timeout=60) == sum(range(1, 31)) + sum(range(12))
    seen = []

    def drawn():
        seen.append(capsys.readouterr().err)
        text = "".join(seen)
        return re.search(r"\(outer pid=\d+\) nested-map: 100%.*30/30", text) and \
            re.search(r"\(outer pid=\d+\) nested-get: 100%.*12/12", text)
    wait_for(drawn, 10, what="the task's map and get bars drawn by the driver")
    wait_for(lambda: not asc._client._context.current()._output._bars, 10, what="the bar to close")


def test_bar_left_open_closes_when_its_task_ends(node, capsys):
    @asc.remote
    def leaves_open(fail):
        bar = asc.tqdm(total=10, desc="left-open")
        bar.update(7)
        if fail:
            raise ValueError("boom")
        return asc.get_runtime_context().get_task_id()
    output = asc._client._context.current()._output
    asc.get(leaves_open.remote(False), timeout=30)
    with pytest.raises(ValueError, match="boom"):
        asc.get(leaves_open.remote(True), timeout=30)
    seen = []

    def closed_twice():
        seen.append(capsys.readouterr().err)
        return "".join(seen).count("7/10") >= 2 and not output._bars
    wait_for(closed_twice, 10, what="both bars drawn at 7/10 and closed")


def test_bar_of_a_crashed_worker_closes_after_its_task_fails(node, capsys, monkeypatch):
    monkeypatch.setattr(_remote_output, "GRACE", 0.2)

    @asc.remote(max_retries=0)
    def crashes():
        bar = asc.tqdm(total=10, desc="crashing")
        bar.update(3)
        bar.refresh()
        os._exit(3)
    output = asc._client._context.current()._output
    with pytest.raises(asc.exceptions.WorkerCrashedError):
        asc.get(crashes.remote(), timeout=30)
    wait_for(lambda: not output._bars and not output.tasks, 10, what="the crashed task's bar to close")


def test_a_tight_loop_sends_at_most_ten_updates_a_second(node):
    """Throttled in the worker: count the states it wrote in its log."""
    @asc.remote
    def tight():
        start = time.monotonic()
        bar = asc.tqdm(total=None, desc="tight", mininterval=0, miniters=1)
        while time.monotonic() - start < 1.0:
            bar.update()
            bar.set_postfix_str(str(bar.n))
        bar.close()
        return os.getpid(), time.monotonic() - start
    pid, seconds = asc.get(tight.remote(), timeout=30)
    log = os.path.join(asc._client._context.current().session_dir, "logs", f"worker-{pid}.log")

    def states():
        with open(log) as f:
            return [line for line in f if line.startswith(_remote_output.MARK) and '"tight"' in line]
    wait_for(lambda: any('"closed":true' in s for s in states()), 10, what="the closing state")
    # about ten a second: the first, one per 0.09-0.1 s (tqdm's clock and ours may differ
    # by a hair), the last
    assert 2 <= len(states()) <= seconds / (0.9 * UPDATE_INTERVAL) + 2, len(states())


# ---------------------------------------------------------------------- the driver's view
def _state(**fields):
    state = {"id": "b1", "desc": "d", "n": 0, "total": 10, "unit": "it", "unit_scale": False,
             "postfix": None, "leave": True, "closed": False, "task": None}
    return encode_state({**state, **fields})


def test_remote_output_lines_bars_and_redraws(capsys):
    bars = io.StringIO()
    out = RemoteOutput(file=bars)
    out.show("f pid=1", "hello\nworld")
    assert capsys.readouterr().out == "(f pid=1) hello\n(f pid=1) world\n"
    out.show("f pid=1", _state(n=4) + "partial " + _state(n=6).rstrip("\n"))
    assert "4/10" in bars.getvalue() and "6/10" in bars.getvalue()
    assert capsys.readouterr().out == "(f pid=1) partial \n"  # printed above the bar
    out.show("f pid=1", "a\r 50%|##\r100%|####| 2/2\r")
    assert capsys.readouterr().out == "(f pid=1) 100%|####| 2/2\n"
    out.show("f pid=1", _state(n=10, closed=True).rstrip("\n"))
    assert not out._bars and "10/10" in bars.getvalue()
    drawn = bars.getvalue()
    out.show("f pid=1", _state(n=3).rstrip("\n"))  # late, for a closed bar: ignored
    assert bars.getvalue() == drawn and not out._bars
    out.show("f pid=1", _remote_output.MARK + "{not json")
    for bad in ({"total": "many"}, {"n": float("nan")}, {"desc": 3}, {"id": None}):
        out.show("f pid=1", _state(**{"id": "b3", **bad}).rstrip("\n"))  # dropped
    assert not out._bars
    out.close()
    # and tqdm's lock is free (a bar whose drawing raised would have kept it)
    other = threading.Thread(target=lambda: asc.tqdm(total=1, file=io.StringIO()).close())
    other.start()
    other.join(30)
    assert not other.is_alive()


def test_remote_output_closes_a_task_bar_after_the_grace(monkeypatch):
    monkeypatch.setattr(_remote_output, "GRACE", 0.05)
    out = RemoteOutput(file=io.StringIO())
    tid = bytes(range(16))
    out.show("f pid=1", _state(id="b2", n=2, task=tid.hex()).rstrip("\n"))
    assert out.tasks == {tid: {"b2"}}
    out.task_done(tid + (1).to_bytes(4, "big"))
    wait_for(lambda: not out._bars and not out.tasks, 5, what="the bar to be reaped")
    out.close()


def test_an_unfinished_redrawn_line_keeps_only_its_last_state():
    """The raylet holds a worker's unfinished line until its newline: a plain tqdm's
    redraws must not make it grow for as long as the bar runs."""
    from actorscoop.node.raylet._workers import _last_redraw
    assert _last_redraw(b"  0%|\r 50%|#####\r 90%|#########") == b"\r 90%|#########"
    assert _last_redraw(b"a line ending in CR\r") == b"a line ending in CR\r"  # CRLF to come
    assert _last_redraw(b"\rone state") == b"\rone state"
    assert _last_redraw(b"") == b""
