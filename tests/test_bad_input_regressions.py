"""What the fuzzer found, pinned down one case each: a record that crashed a raylet or left
entries behind before, now dropped and counted (``dropped`` in the node's status), the
node still serving. The fuzzer itself: tests/test_fuzz_*.py."""
import os
import time

import pytest

import actorscoop as asc
from actorscoop._cli import _main as _cli
from actorscoop import protocol as P
from actorscoop import scheduler as S
from actorscoop.node.raylet._objects import DIRECT_CALL, ObjectTable
from actorscoop.transport import Connection

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def raylet(node):
    core = asc._client._context.current()
    sockets = os.path.realpath(os.path.join(core.session_dir, "sockets"))
    return {"raylet_socket": os.path.join(sockets, "raylet.sock"), "node_id": core.node_id.hex()}


def status(raylet):
    return _cli.request(raylet, "status")


def client(raylet, kind=P.KIND_DRIVER):
    c = Connection(raylet["raylet_socket"])
    c.send(P.encode([P.Hello(P.PROTOCOL_VERSION, kind, os.getpid(), os.urandom(16), "regression")]))
    assert type(P.decode(c.recv(10))[0]) is P.Welcome
    return c


def send_raw(conn, *records):
    import msgpack
    conn.send(msgpack.packb([list(r) for r in records], use_bin_type=True))


def dropped_after(raylet, kind, before, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        n = status(raylet)["dropped"].get(kind, 0)
        if n > before or time.monotonic() > deadline:
            return n
        time.sleep(0.02)


def live(raylet):
    s = status(raylet)
    return s["objects"]["objects"], sum(a["state"] != "dead" for a in s["actors"]), sum(s["tasks"].values())


IDLE = (0, 0, 0)  # live objects, live actors, tasks of this module's node between tests


@asc.remote
def ok():
    return "ok"


@pytest.mark.parametrize("kind, records", [
    ("unexpected Hello", [P.Hello(P.PROTOCOL_VERSION, P.KIND_DRIVER, 1, b"again", "")]),  # broke its handler
    ("malformed GetObjects", [P.GetObjects([5])]),  # an int id reached the loop's unknown-id check
    ("malformed SubmitTask", [P.SubmitTask(os.urandom(16), os.urandom(16), "f", None, None, [], [], 1,
                                           {"CPU": "lots"}, 0, False, None, None)]),  # left its results
    ("malformed SubmitTask", [P.SubmitTask(os.urandom(16), os.urandom(16), "f", None, None, [], [], 2**40,
                                           {}, 0, False, None, None)]),  # 2**40 entries
    ("malformed PutObject", [P.PutObject(b"", P.VALUE_PLASMA, None, 1, [])]),  # the store refused b""
    ("malformed RefDelta", [P.RefDelta([[1]], [])]),
    ("malformed TaskDone", [P.TaskDone(os.urandom(16), [[1, 2]], False, False, 0.0, 0.0, None)]),
    ("malformed CreateActor", [P.CreateActor(0, b"", "C", "", "", False, False, 0, 0, 1, {}, False, b"")]),
])
def test_a_bad_record_is_dropped_and_counted(raylet, kind, records):
    before_count = status(raylet)["dropped"].get(kind, 0)
    before = IDLE
    assert settles(raylet, IDLE)
    c = client(raylet)
    c.send(P.encode(records))
    assert dropped_after(raylet, kind, before_count) == before_count + 1
    c.close()
    assert settles(raylet, before)
    assert asc.get(ok.remote(), timeout=30) == "ok"


def settles(raylet, expected, timeout=10.0):
    """Whether the node's live objects, actors and tasks come back to ``expected``."""
    deadline = time.monotonic() + timeout
    while live(raylet) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_field_of_the_wrong_type_is_a_malformed_frame(raylet):
    before = status(raylet)["dropped"].get("malformed frame", 0)
    c = client(raylet)
    send_raw(c, [P.MESSAGE_TYPES.index(P.KillActor), "not bytes", True])
    assert dropped_after(raylet, "malformed frame", before) == before + 1
    c.close()


def test_status_says_how_many_bad_messages_were_dropped(raylet):
    c = client(raylet)
    before = status(raylet)["dropped"].get("malformed frame", 0)
    c.send(b"\xc1 not msgpack")
    assert dropped_after(raylet, "malformed frame", before) == before + 1
    c.close()
    from actorscoop._cli._status_text import format_status
    assert "Bad messages dropped: " in format_status(status(raylet))


def test_what_a_departed_client_left_unfinished_is_forgotten(raylet):
    """A detached actor whose constructor never came, the result of a direct call whose
    caller never reported it, a queued task of a CLI client: all gone with the client."""
    before = IDLE
    assert settles(raylet, IDLE)
    c = client(raylet, P.KIND_CLI)
    c.send(P.encode([
        P.CreateActor(0, os.urandom(16), "C", "", "", True, False, 0, 0, 1, {}, False, b""),
        P.Promote([os.urandom(20)], []),
        P.RegisterFunction(b"f" * 16, "f", b"not a pickle", []),
        P.SubmitTask(os.urandom(16), b"f" * 16, "f", None, None, [], [], 1, {"GPU": 1.0}, 0, False, None, None)]))
    objects, actors, tasks = before
    assert settles(raylet, (objects + 2, actors + 1, tasks + 1))  # while the client is there
    c.close()
    assert settles(raylet, before)


def test_an_unreported_direct_call_result_nobody_holds_is_forgotten():
    t = ObjectTable()
    oid = os.urandom(20)
    t.expect(oid, b"driver", DIRECT_CALL)
    t.remove_holder(oid, b"driver")
    assert oid not in t.entries
    t.expect(oid, b"driver", DIRECT_CALL)
    t.subscribe(oid, b"worker")  # someone waits for it: kept
    t.drop_client(b"driver")
    assert oid in t.entries
    t.drop_client(b"worker")
    assert oid not in t.entries
    task_result = os.urandom(20)
    t.expect(task_result, b"driver", "f")  # a task's result stays until the task reports it
    t.drop_client(b"driver")
    assert task_result in t.entries


def test_the_scheduler_rejects_one_bad_event_and_applies_the_others():
    s = S.Scheduler(S.SchedulerConfig(resources={"CPU": 1.0}, max_workers=4))
    tid = os.urandom(16)
    rejected = []
    s.handle_many([S.TaskSubmitted(tid, {"CPU": 1.0}, (), "f"), S.TaskSubmitted(tid, {"CPU": 1.0}, (), "f"),
                   S.TaskSubmitted(os.urandom(16), {"CPU": 1.0}, (), "g")], rejected)
    assert [type(e) for e, _ in rejected] == [S.TaskSubmitted] and "duplicate" in str(rejected[0][1])
    assert len(s.tasks) == 2
    with pytest.raises(S.IllegalTransition):
        s.handle_many([S.TaskSubmitted(tid, {"CPU": 1.0}, (), "f")])


# ------------------------------------------------------------------ from a member, at the head

@pytest.fixture(scope="module")
def head():
    """A single-node cluster (beside this module's embedded node: the leak check looks at
    the cluster's own processes and session only)."""
    import psutil
    from actorscoop.testing import Cluster
    from conftest import LeakCheck
    leaks = LeakCheck()

    def snapshot(c):
        raylet = c.nodes[0][0].pid
        leaks.pids |= {raylet} | {p.pid for p in psutil.Process(raylet).children(recursive=True)}
        leaks.session_dirs.add(c.info(0)["session_dir"])
    with Cluster(nodes=[{"num_cpus": 1}]) as c:
        snapshot(c)
        yield c
        snapshot(c)
    leaks.assert_clean()


def member(c):
    """A DEALER holding the cluster's token, joined as a node without resources."""
    import zmq
    from actorscoop.transport import _secure
    ctx = zmq.Context()
    sock = _secure.client_socket(ctx, zmq.DEALER, c.creds, f"tcp://{c.info(0)['cluster']}")
    node_id = os.urandom(16)
    sock.send(P.encode([P.NodeJoin(P.PROTOCOL_VERSION, node_id, "test", 1, {}, "127.0.0.1:1")]))
    assert sock.poll(10_000) and type(P.decode(sock.recv())[0]) is P.JoinReply
    return ctx, sock, node_id


def cluster_dropped(c):
    return _cli.request(c.info(0), "status")["cluster"]["dropped"]


def spill(node_id, task_id, seconds):
    import cloudpickle
    import pickle
    spec = P.SubmitTask(task_id, b"sleep-fn" * 2, "sleep", pickle.dumps(((seconds,), {})), None, [], [], 1,
                        {"CPU": 1.0}, 0, False, None, None, 0)
    return P.SpillTask(node_id, list(spec), [], ["sleep", cloudpickle.dumps(time.sleep), []], 0)


@pytest.mark.parametrize("kind, record", [
    ("malformed Heartbeat", lambda n: P.Heartbeat(n, {"CPU": "lots"}, 0, 0, 0)),  # poisoned placement
    ("malformed KVPut", lambda n: P.KVPut(1, "k", b"", [[1]], True)),  # unhashable ids
    ("malformed RouteCall", lambda n: P.RouteCall(n, list(P.SubmitTask(
        os.urandom(16), b"", "A.f", None, None, [os.urandom(20)], [], 1, {}, 0, False, os.urandom(16), "f", 0)),
        [])),  # an argument that does not travel with it
    ("malformed SpillActor", lambda n: P.SpillActor(n, list(P.CreateActor(
        0, os.urandom(16), "A", "", "", False, False, 0, 0, 1, {}, False, b"")), list(P.SubmitTask(
            os.urandom(16), b"f" * 16, "A", None, None, [], [], 1, {}, 0, False, os.urandom(16), "__init__", 0)),
        [], ["A", b"x", []])),  # its constructor's call is to another actor
])
def test_a_bad_record_from_a_member_is_dropped_and_counted(head, kind, record):
    ctx, sock, node_id = member(head)
    try:
        before = cluster_dropped(head).get(kind, 0)
        sock.send(P.encode([record(node_id)]))
        deadline = time.monotonic() + 10
        while cluster_dropped(head).get(kind, 0) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cluster_dropped(head).get(kind, 0) == before + 1
    finally:
        sock.close(linger=0)
        ctx.term()


def test_a_spilled_task_the_head_already_runs_is_dropped_not_fatal(head):
    """The head placed a member's task on its own node while a task of that id ran there:
    the scheduler raised on the duplicate, and the head's raylet died. (Now the head drops
    a spill of a task it has queued or placed; the node drops a RunTask of a task it has.)"""
    ctx, sock, node_id = member(head)
    kinds = ("RunTask of a task this node has", "SpillTask of a task the head has")
    try:
        task_id = os.urandom(16)
        before = sum(cluster_dropped(head).get(k, 0) for k in kinds)
        sock.send(P.encode([spill(node_id, task_id, 1.0)]))
        sock.send(P.encode([spill(node_id, task_id, 1.0)]))
        got = []
        while not any(type(r) is P.TaskResult for r in got):
            assert sock.poll(30_000), "the head sent no result"
            got += P.decode(sock.recv())
        (result,) = [r for r in got if type(r) is P.TaskResult]
        assert result.task_id == task_id and result.results[0][1] == P.VALUE_INLINE
        assert sum(cluster_dropped(head).get(k, 0) for k in kinds) == before + 1
        assert head.nodes[0][0].poll() is None
    finally:
        sock.close(linger=0)
        ctx.term()


# ------------------------------------------------------------------ a driver's result socket

def test_a_drivers_result_socket_takes_only_results(raylet):
    """Workers send only results (ObjectValue) there. Other records reached the handler of
    the raylet's messages: each distinct Warning_ was printed and kept for good, each
    unexpected record and malformed frame logged a line."""
    core = asc._client._context.current()
    before = dict(core._drops.counts())
    warned = len(core._warned)
    oid = os.urandom(20)
    waiter = core._add_waiter([oid], 1)
    c = Connection(core._listener.path)
    try:
        c.send(P.encode([P.Warning_(f"spoofed {i}") for i in range(50)]))
        c.send(P.encode([P.ObjectValue(os.urandom(20), 7, b"x")]))  # no such kind of value
        c.send(b"\x93garbage")
        c.send(P.encode([P.ObjectValue(oid, P.VALUE_INLINE, __import__("pickle").dumps(1))]))
        assert waiter.event.wait(30)
    finally:
        core._remove_waiter(waiter)
        c.close()
    counts = core._drops.counts()
    for kind, n in [("unexpected Warning_", 50), ("malformed ObjectValue", 1), ("malformed frame", 1)]:
        kind += " on the result socket"
        assert counts[kind] == before.get(kind, 0) + n, kind
    assert len(core._warned) == warned
    assert asc.get(ok.remote(), timeout=30) == "ok"


# ------------------------------------------------------------------ an actor's direct-call socket

@asc.remote
class Pinged:
    def ping(self):
        return "pong"

    def state(self):
        core = asc._client._context.current()
        return {"drops": core.drops.counts(), "blobs": len(core._blobs), "origin": len(core._direct_server.origin),
                "sockets": os.path.dirname(core.plasma_socket)}


def _call(tid, actor, **changes):
    import pickle
    rec = P.ExecuteTask(tid, b"\0" * 16, "ping", None, None, pickle.dumps(((), None), protocol=5), None, [], 1,
                        False, b"regression", 0, actor, "ping", 0, None, False)
    return rec._replace(**changes)


@pytest.mark.parametrize("changes, why", [
    ({"num_returns": 2**40}, "2**40 error values: the actor's memory grew by GiBs"),
    ({"num_returns": -1}, "no value: the call was never answered"),
    ({"function_blob": b"\x80\x05N."}, "a pickle kept for good (per function id) and loaded"),
    ({"method": "__init__"}, "ran the constructor again"),
    ({"retry_exceptions": b"\x80\x05N."}, "a pickle loaded on failure"),
    ({"actor_id": b"another actor" * 2}, "a call meant for another actor ran here"),
])
def test_a_bad_direct_call_is_dropped_and_counted(raylet, changes, why):
    from actorscoop._common._session import actor_socket as socket_path
    actor = Pinged.remote()
    try:
        first = asc.get(actor.state.remote(), timeout=30)
        c = Connection(socket_path(first["sockets"], actor._actor_id))
        try:
            c.send(P.encode([P.DirectHello(b"regression")]))
            bad, good = os.urandom(16), os.urandom(16)
            c.send(P.encode([_call(bad, actor._actor_id, **changes), _call(good, actor._actor_id)]))
            answered = []
            while good not in answered:
                frame = c.recv(30)
                assert frame is not None, "the actor did not answer"
                answered += [r.task_id for r in P.decode(frame) if type(r) is P.CallDone]
            assert bad not in answered, why
        finally:
            c.close()
        after = asc.get(actor.state.remote(), timeout=30)
        assert after["drops"].get("malformed call from a direct caller", 0) == 1, why
        assert after["blobs"] == 0 and after["origin"] == 1  # the call to state() itself
        assert asc.get(actor.ping.remote(), timeout=30) == "pong"
    finally:
        asc.kill(actor)


# ------------------------------------------------------------------ a member, from its head

def test_a_head_repeating_rejoin_is_logged_once_a_minute(tmp_path):
    """Each JoinReply "rejoin" logged a warning: a head (or one holding its keys) could
    fill the member's log."""
    import psutil
    import fuzz_peers
    from conftest import LeakCheck
    leaks = LeakCheck()
    head = fuzz_peers.FakeHead(output=str(tmp_path / "member.log"))
    try:
        leaks.pids |= {head.pid} | {p.pid for p in psutil.Process(head.pid).children(recursive=True)}
        leaks.session_dirs.add(head.info["session_dir"])
        head.session([[P.encode([P.JoinReply(False, "rejoin", head.node_id)])] for _ in range(20)])
        assert head.alive()
    finally:
        head.close()
    leaks.assert_clean()
    text = (tmp_path / "member.log").read_text()
    assert text.count("does not count this node in") == 1, text


def test_a_head_cannot_finish_a_task_the_member_runs(tmp_path):
    """A TaskResult from the head for a task the member ran for it removed the task's entry
    while the scheduler still had it queued: a traceback at its dispatch, and the task never
    ran (found by fuzzing a member). Only tasks the member sent away are the head's to
    finish."""
    import pickle
    import cloudpickle
    import psutil
    import fuzz_peers
    from conftest import LeakCheck
    leaks = LeakCheck()
    head = fuzz_peers.FakeHead(output=str(tmp_path / "member.log"))
    try:
        leaks.pids |= {head.pid} | {p.pid for p in psutil.Process(head.pid).children(recursive=True)}
        leaks.session_dirs.add(head.info["session_dir"])
        member = bytes.fromhex(head.info["node_id"])
        function = ["nap", cloudpickle.dumps(lambda: __import__("time").sleep(0.3) or 1), []]
        args = pickle.dumps(((), None), protocol=5)
        first, second = os.urandom(16), os.urandom(16)  # one CPU: the second waits its turn
        run = [[P.encode([P.RunTask(head.node_id, list(P.SubmitTask(
            tid, b"nap-function-id!", "nap", args, None, [], [], 1, {"CPU": 1.0}, 0, False, None, None)),
            [], function)])] for tid in (first, second)]
        bogus = [P.encode([P.TaskResult(member, head.node_id, second,
                                        [[second + (1).to_bytes(4, "big"), P.VALUE_INLINE, args, 0, []]], [])])]
        head.session([*run, bogus])
        done = set()
        deadline = time.monotonic() + 60
        while second not in done and time.monotonic() < deadline:
            if head.sock.poll(100):
                _ident, *frames = head.sock.recv_multipart()
                done |= {r.task_id for f in frames for r in P.decode(f) if type(r) is P.TaskResult}
        assert {first, second} <= done, "the member did not run both tasks"
        assert head.alive()
    finally:
        head.close()
    leaks.assert_clean()
    text = (tmp_path / "member.log").read_text()
    assert "Traceback" not in text, text
    assert "TaskResult for a task this node did not send away" in text, text


# ------------------------------------------------------------------ file modes

def test_the_dashboards_log_is_private():
    """Found by the file-mode check of ci/reliability_fuzz.py once its Security part
    started a dashboard: logs/dashboard.log was made under the umask (0644)."""
    import stat
    import psutil
    from actorscoop.testing import Cluster
    from conftest import LeakCheck
    leaks = LeakCheck()
    with Cluster(include_dashboard=True, dashboard_host="0.0.0.0") as c:
        raylet = c.nodes[0][0].pid
        leaks.pids |= {raylet} | {p.pid for p in psutil.Process(raylet).children(recursive=True)}
        leaks.session_dirs.add(c.info(0)["session_dir"])
        path = os.path.join(c.info(0)["session_dir"], "logs", "dashboard.log")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    leaks.assert_clean()


# ------------------------------------------------------------------ a worker, from its raylet

@pytest.mark.parametrize("changes, logged", [
    # made the worker build error values until its memory ran out
    ({"num_returns": 2**40}, "an empty task id, or num_returns 1099511627776"),
    # each entry went into the worker's sys.path for good (and importlib cached a finder for each)
    ({"sys_path": [1, b"x", ["y"]]}, "an import path (sys_path) that is not all str"),
])
def test_a_task_the_worker_cannot_run_is_dropped(tmp_path, changes, logged):
    """The raylet never sends these (it checks each SubmitTask and RegisterFunction). The
    worker stands alone here: tests/fuzz_peers.py's WorkerTarget plays its raylet."""
    import fuzz_peers
    worker = fuzz_peers.WorkerTarget(str(tmp_path / "worker.log"))
    try:
        before = fuzz_peers.memory(worker.pid)[1]
        worker.session([P.encode([worker.task(os.urandom(16))._replace(**changes)])])
        assert worker.alive() and fuzz_peers.memory(worker.pid)[1] - before < 16 << 20
    finally:
        worker.close()
    assert f"dropped malformed ExecuteTask: {logged}" in (tmp_path / "worker.log").read_text()


# ------------------------------------------------------------------ a driver, from its raylet

def test_a_driver_remembers_a_bounded_number_of_warnings(tmp_path):
    """Each distinct Warning_ (an out-of-memory kill names its figures) was kept for good
    to show it once: a long-running driver grew with them. The driver runs on its own
    here: tests/fuzz_peers.py's DriverRayletTarget plays its raylet."""
    import fuzz_peers
    from actorscoop._driver import _connection as _driver
    driver = fuzz_peers.DriverRayletTarget(str(tmp_path / "driver.log"))
    try:
        driver.session([P.encode([P.Warning_(f"warning {i}") for i in range(_driver._WARNED + 100)])])
        assert driver.tables()["warned"] == _driver._WARNED and driver.alive()
    finally:
        driver.close()
    assert (tmp_path / "driver.log").read_text().count("actorscoop warning: ") == _driver._WARNED + 100


def test_the_class_of_a_task_error_is_made_once_per_cause():
    """Each error value described or raised made a throwaway class ("probe") to learn
    whether its cause's class can be subclassed: under a stream of failing tasks (the
    worker fuzzer's) they piled up until a full garbage collection."""
    import gc
    from actorscoop.exceptions import TaskError
    gc.disable()
    try:
        before = len(TaskError.__subclasses__())
        errors = [TaskError("f", "tb", KeyError("k"), "n", 1, "executing").as_instanceof_cause() for _ in range(100)]
        assert len({type(e) for e in errors}) == 1 and isinstance(errors[0], KeyError)
        assert len(TaskError.__subclasses__()) <= before + 1
    finally:
        gc.enable()
