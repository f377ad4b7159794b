"""Fuzz campaigns: hypothesis drives sessions against one live target each; the caller
checks the processes afterwards. ``examples`` is how many sessions (a few hundred in the
test suite, thousands in ci/reliability_fuzz.py)."""
import os

import msgpack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fuzz_strategies as FS
from actorscoop import protocol as P
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
