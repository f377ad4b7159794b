"""Fuzz campaigns: hypothesis drives sessions against one live target each; the caller
checks the processes afterwards. ``examples`` is how many sessions (a few hundred in the
test suite, thousands in ci/reliability_fuzz.py)."""
import json
import os
import pickle

import msgpack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fuzz_strategies as FS
from actorscoop import protocol as P
from actorscoop.protocol._output import BAR_MARK as MARK
from actorscoop.plasma import _protocol as PP


def run(strategy, examples, body):
    """Call ``body`` on ``examples`` values drawn from ``strategy`` (no shrinking: the
    targets are live processes whose state an example changes)."""
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def inner(value):
        body(value)
    inner()


# Everything a client may send, but StopNode: a client asking the node to stop is obeyed.
RAYLET_TYPES = tuple(t for t in P.MESSAGE_TYPES if t is not P.StopNode)
_HELLO = P.MESSAGE_TYPES.index(P.Hello)


def _hello(kind, version=P.PROTOCOL_VERSION):
    return [_HELLO, version, kind, os.getpid(), os.urandom(16), "fuzz"]


hellos = FS.mostly(st.builds(_hello, st.sampled_from([P.KIND_DRIVER, P.KIND_DRIVER, P.KIND_CLI])), st.one_of(
    st.none(),  # records before any Hello
    st.sampled_from([P.KIND_WORKER, "nobody"]).map(_hello),  # refused
    st.just(P.PROTOCOL_VERSION + 7).map(lambda v: _hello(P.KIND_DRIVER, v)),  # refused
    FS.record((P.Hello,))), 3)
raylet_sessions = st.tuples(hellos, st.lists(FS.frame(RAYLET_TYPES), max_size=5),
                            st.sampled_from(["close"] * 6 + ["oversized", "cut", "empty"]))


def fuzz_raylet(target, examples):
    run(raylet_sessions, examples, lambda s: target.session(*s))


def fuzz_store(target, examples):
    connect = PP.encode(PP.Connect(7, os.getpid(), PP.VERSION))
    frames = st.lists(FS.plasma_frame(os.getpid()), max_size=6)
    sessions = st.tuples(FS.mostly(frames.map(lambda fs: [connect, *fs]), frames, 3), FS.mostly(st.just(False), st.just(True)))
    raw = st.binary(min_size=1, max_size=200)

    def body(value):
        kind, payload = value
        if kind == "raw":
            target.raw_session(payload)
        else:
            target.session(*payload)
    run(st.one_of(sessions.map(lambda s: ("zmq", s)), sessions.map(lambda s: ("zmq", s)),
                  sessions.map(lambda s: ("zmq", s)), raw.map(lambda b: ("raw", b))), examples, body)


# What members send the head, and (less often) everything else.
HEAD_TYPES = (P.NodeJoin, P.Heartbeat, P.SpillTask, P.TaskResult, P.SpillActor, P.RouteCall,
              P.ActorHosted, P.ActorRestartSpec, P.ActorGone, P.RouteKill, P.ActorLookup,
              P.CancelTask, P.RemoteLog, P.FreeRemote, P.KVPut, P.KVGet, P.ClusterStatusRequest)


def fuzz_head(target, examples):
    frames = st.one_of(FS.frame(HEAD_TYPES), FS.frame(HEAD_TYPES), FS.frame(HEAD_TYPES), FS.frame())
    sessions = st.tuples(st.lists(frames, max_size=5), st.integers(0, 3), FS.mostly(st.just(True), st.just(False), 3))
    run(sessions, examples, lambda s: target.session(*s))


def fuzz_transfer(target, examples, object_ids=()):
    """Sealed PullRequests with bad fields (``object_ids``: real objects on that node, so
    offsets and lengths reach the serving code), other sealed records, and unsealed or
    foreign-key garbage."""
    oids = st.sampled_from(list(object_ids) or [os.urandom(20)])
    request = st.tuples(FS.almost(st.one_of(oids, oids, FS.some_bytes)),
                        FS.almost(st.one_of(st.integers(-5, 10 << 20), FS.any_int)),
                        FS.almost(st.one_of(st.integers(-5, 10 << 20), FS.any_int))).map(
        lambda t: msgpack.packb([[P.MESSAGE_TYPES.index(P.PullRequest), *t]], use_bin_type=True))
    record = FS.mostly(request, FS.frame(), 3)
    one = st.tuples(record.map(lambda r: [r]), st.just("sealed"))
    other = st.tuples(st.lists(record, max_size=3), st.sampled_from(["sealed", "plain", "stranger", "flipped", "cut"]))
    done = [0]

    def body(value):
        target.send(*value)
        target.drain_replies()
        done[0] += 1
        if done[0] % 100 == 0:
            target.sync()
    run(FS.mostly(one, other, 3), examples, body)
    target.sync()


endings = st.sampled_from(["close"] * 6 + ["oversized", "cut", "empty"])

# What a driver receives (from its raylet, and on its result socket from workers).
DRIVER_TYPES = (P.ObjectValue, P.TaskStarted, P.LogLines, P.KVReply, P.ActorReply, P.StatusReply, P.Warning_,
                P.CallDone)


def fuzz_driver(target, examples):
    frames = st.one_of(FS.frame(DRIVER_TYPES), FS.frame(DRIVER_TYPES), FS.frame())
    run(st.tuples(st.lists(frames, max_size=5), endings), examples, lambda s: target.session(*s))


# A progress bar's state as a task's output carries it (_driver/_remote_output.py), of a few bars;
# one field in eight of another JSON type.
_JSON = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6), st.lists(st.integers()))
_BAR = st.fixed_dictionaries({"id": st.sampled_from(["a", "b", "c"]),
                              "n": FS.almost(st.one_of(st.integers(), st.floats()), _JSON)},
                             optional={k: FS.almost(v, _JSON) for k, v in {
                                 "total": st.one_of(st.none(), st.integers(-2, 10), st.floats()),
                                 "desc": st.text(max_size=8), "unit": st.text(max_size=3),
                                 "unit_scale": st.one_of(st.booleans(), st.floats()),
                                 "postfix": st.text(max_size=8), "leave": st.booleans(), "closed": st.booleans(),
                                 "task": st.sampled_from(["", "zz", "00" * 16, "01" * 16])}.items()})


def fuzz_driver_raylet(target, examples):
    """What a raylet sends its driver, with fields of the wrong type or hostile content;
    output lines that carry progress bars' states among them."""
    bar_line = st.tuples(st.text(max_size=4), _BAR).map(lambda t: t[0] + MARK + json.dumps(t[1]))
    output = FS.record_with(P.LogLines, text=st.one_of(bar_line, st.text(max_size=20)))
    records = st.one_of(FS.record(DRIVER_TYPES), FS.record(DRIVER_TYPES), output, FS.record())
    frames = FS.mostly(FS.frame_of(records), FS.frame(), 5)
    run(st.lists(frames, max_size=4), examples, target.session)


# num_returns a task cannot have (not the valid but costly ones: 65,536 error values in one
# answer leave a high-water mark in the process that sends them).
_TOO_MANY = st.one_of(st.integers(P.MAX_RETURNS + 1, 1 << 40), st.integers(-2**63, -1), st.integers(2**63, 2**64 - 1))
METHODS = ["ping", "ping", "tables", "nosuch", "__init__", "", "__class__", "__del__"]
_NO_ARGS = pickle.dumps(((), None), protocol=5)


def fuzz_actor(target, examples):
    """Calls as a driver sends them (most to the actor, with the right arguments), with
    fields of the wrong type or hostile content, and other records."""
    call = FS.record_with(
        P.ExecuteTask,
        actor_id=FS.mostly(st.just(target.actor_id), st.one_of(st.none(), FS.some_bytes)),
        method=FS.almost(st.one_of(st.sampled_from(METHODS), st.none())),
        function_blob=FS.mostly(st.none(), st.binary(max_size=32)),
        args=FS.mostly(st.just(_NO_ARGS), FS.junk, 3),
        num_returns=FS.mostly(st.integers(-1, 3), _TOO_MANY, 3),
        retry_exceptions=FS.mostly(st.just(False), FS.junk),
        job_id=st.just(target.caller))
    hello = FS.record_with(P.DirectHello, caller=FS.mostly(st.just(target.caller), FS.some_bytes))
    records = FS.mostly(call, st.one_of(hello, FS.record()), 3)
    frames = FS.mostly(FS.frame_of(records), FS.frame(), 5)
    hellos = FS.mostly(hello, st.one_of(st.none(), FS.record()), 3)
    run(st.tuples(hellos, st.lists(frames, max_size=4), endings), examples, lambda s: target.session(*s))


# What a member receives from its head, and (less often) everything else.
MEMBER_TYPES = (P.RunTask, P.TaskResult, P.TaskLost, P.JoinReply, P.FreeRemote, P.RunActor, P.RouteKill,
                P.CancelTask, P.RemoteLog, P.KVReply, P.ActorFound, P.ClusterStatusReply)


def fuzz_member(head, examples):
    rejoin = FS.record_with(P.JoinReply, ok=st.booleans(), reason=st.sampled_from(["rejoin", "", "no"]))
    records = st.one_of(FS.record(MEMBER_TYPES), FS.record(MEMBER_TYPES), FS.record(MEMBER_TYPES), rejoin,
                        FS.record())
    frames = FS.mostly(FS.frame_of(records), FS.frame(), 5)
    oversized = b"\x91\xc6" + (64 << 20).to_bytes(4, "big") + bytes(64 << 20)  # a batch of one 64 MiB bin
    message = FS.mostly(st.lists(frames, min_size=1, max_size=3), st.just([oversized]), 50)
    run(st.lists(message, max_size=4), examples, head.session)


# What a worker receives from its raylet (StopNode left out: a raylet stopping it is obeyed);
# tasks only as fuzz_worker makes them (fields of the wrong type are the codec's to refuse).
_NOT_TASKS = (P.ObjectValue, P.KVReply, P.ActorReply, P.StatusReply, P.TaskStarted,
              *(t for t in P.MESSAGE_TYPES if t not in (P.StopNode, P.ExecuteTask)))


def fuzz_worker(target, examples):
    """Tasks as a raylet sends them (most of the function the worker has, with the right
    arguments), with fields of the wrong type or hostile content, and other records."""
    fid, blob = target.function
    task = FS.record_with(
        P.ExecuteTask,
        function_id=FS.mostly(st.just(fid), FS.ids, 3),
        function_blob=FS.mostly(st.none(), st.one_of(st.just(blob), st.binary(max_size=32))),
        sys_path=st.one_of(st.none(), st.just([])),
        args=FS.mostly(st.just(pickle.dumps(((-1,), None), protocol=5)), FS.junk, 3),
        num_returns=FS.mostly(st.integers(-1, 3), _TOO_MANY, 3),
        retry_exceptions=FS.mostly(st.just(False), FS.junk),
        reply_to=FS.mostly(st.none(), st.text(max_size=8)),
        concurrency=st.integers(-1, 2), inline=st.just(False))
    records = FS.mostly(task, st.one_of(FS.record(_NOT_TASKS[:5]), FS.record(_NOT_TASKS)), 3)
    frames = FS.mostly(FS.frame_of(records), FS.frame(_NOT_TASKS), 5)
    run(st.lists(frames, max_size=4), examples, target.session)
