"""Message definitions. Each message is an immutable NamedTuple with a unique tag.

Field conventions: ids are ``bytes``; ``data`` fields hold serialized values produced
by :mod:`actorscoop._common._serialization` (``bytes`` or a list ``[stream, *buffers]``);
``kind`` fields are one of the ``VALUE_*`` constants.
"""
from typing import Any, NamedTuple, Optional

PROTOCOL_VERSION = 10  # 3: object transfers sealed with AES-GCM (transport/_sealed.py); 4: task events;
# 5: a worker holds several paused tasks (Blocked.paused); 6: worker leases; 7: GPUs, runtime
# environments and placement groups (PlacementGroupOp/Reply, BundleOp/Reply); 8: Heartbeat.received
# (load balancing: the head counts what each node has taken); 9: lineage and borrowers
# (NodeDied, Borrow, results kept where they were made), direct calls to actors on other nodes
# (ActorRoute and the call link), work stealing; 10: TaskRan (a driver times its functions by
# how long they ran, not by when their results came back)

# How a value travels.
VALUE_INLINE = 0  # data holds the serialized value
VALUE_PLASMA = 1  # the value is in the node's plasma store under its object id
VALUE_ERROR = 2  # data holds a serialized exception
VALUE_REMOTE = 3  # between nodes only: data is [node_id, object_address, key] of a node whose store holds it

# Client kinds in Hello.
KIND_DRIVER = "driver"
KIND_WORKER = "worker"
KIND_CLI = "cli"
# Written to a worker's control pipe (where cancelled task ids go) before a SIGINT: hand
# back the tasks queued on you that you have not started (answer: ReturnTasks).
RECLAIM = b"\xff" * 16


# ---------------------------------------------------------------- client -> raylet
class Hello(NamedTuple):
    """First record a client sends. The raylet answers with Welcome or Refused."""
    version: int
    kind: str
    pid: int
    worker_id: bytes  # worker: its id; driver: its job id; cli: b""
    name: str


class RegisterFunction(NamedTuple):
    function_id: bytes
    name: str
    blob: bytes
    sys_path: list  # the submitter's import path, so workers can import its modules


class SubmitTask(NamedTuple):
    task_id: bytes
    function_id: bytes
    name: str
    args: Any  # serialized (args, kwargs); None if args_object is set
    args_object: Optional[bytes]  # object id of args stored in plasma (large args)
    deps: list  # object ids of top-level ObjectRef arguments, in order
    nested: list  # object ids of refs found elsewhere in the arguments
    num_returns: int
    resources: dict
    max_retries: int
    retry_exceptions: Any  # bool, or serialized tuple of exception types
    actor_id: Optional[bytes]  # an actor method call (or, with method "__init__", its creation)
    method: Optional[str]
    # An actor call first sent straight to the actor's process (pid), whose connection
    # broke before the result came: it may have run there (max_task_retries decides).
    previous_pid: int = 0
    # From a worker: it keeps the task to run it itself (inside its running task's waits,
    # or after it), unless the raylet asks for it back (P.RECLAIM). See node/worker/_tasklets.py.
    held: bool = False
    # Its runtime environment (issue 20), as _client/_runtime_env.py packs it: env_vars, and
    # working_dir/py_modules as packages in the object store (their ids are in ``nested``).
    runtime_env: Optional[dict] = None


class CreateActor(NamedTuple):
    """Sent just before the actor's "__init__" SubmitTask. With a request_id, the raylet
    answers with an ActorReply (named actors: the caller must learn of a clash)."""
    request_id: int
    actor_id: bytes
    class_name: str
    name: str  # "" for an unnamed actor
    namespace: str
    detached: bool
    get_if_exists: bool
    max_restarts: int
    max_task_retries: int
    max_concurrency: int
    resources: dict  # needed to place it
    hold_resources: bool  # keep them reserved while it lives (explicit num_cpus/resources)
    meta: bytes  # what get_actor() needs to rebuild a handle


class KillActor(NamedTuple):
    actor_id: bytes
    no_restart: bool


class GetActor(NamedTuple):
    request_id: int
    name: str
    namespace: str


class PutObject(NamedTuple):
    object_id: bytes
    kind: int
    data: Any
    size: int
    contained: list


class GetObjects(NamedTuple):
    """Ask for values; the raylet sends an ObjectValue for each as soon as it is ready."""
    object_ids: list


class RefDelta(NamedTuple):
    """Ids whose local reference count went 0 -> 1 (added) or 1 -> 0 (removed)."""
    added: list
    removed: list


class Blocked(NamedTuple):
    """Every task a worker holds is paused in get/wait, for these tasks' results (those
    of the most recently paused task first). It hands back the tasks queued on it that it
    has not started (``returned``): they may run elsewhere. ``paused``: how many tasks it
    holds paused (status shows it); 0 when a thread of a task waits in get (the task's
    code runs on, say joining it: nothing can run inline there)."""
    awaited_tasks: list
    returned: list
    paused: int


class Unblocked(NamedTuple):
    pass


class ReturnTasks(NamedTuple):
    """A busy worker hands back the tasks queued on it that it has not started (asked by
    the raylet through its control pipe: a worker idles while they wait). ``moved``: a
    task that started here and cannot go on here (it asked for a lock that a task paused
    in this worker holds: node/worker/_task_locks.py); it starts again in another worker.
    Also node -> head: tasks the head placed on the node, never started, given back (work
    stealing: node/raylet/_give_back.py; ``moved`` False)."""
    task_ids: list
    moved: bool = False


class TaskDone(NamedTuple):
    """A worker finished a task. results: [[object_id, kind, data, size, contained], ...]."""
    task_id: bytes
    results: list
    retryable: bool  # an application error that retry_exceptions allows to retry
    delivered: bool  # the results went straight to the submitter (ExecuteTask.reply_to)
    start: float  # when the worker started it and when it was done (time.time()), for
    end: float  # the task events (status, timeline)
    error: Optional[list]  # a failure: [error type, message, traceback text]; else None


class CallsDone(NamedTuple):
    """An actor's process tells its raylet about the direct calls it ran (the raylet never
    saw them), in batches: [[task_id, name, start, end, error, caller], ...], ``error`` as in
    TaskDone, ``caller`` the calling driver's identity at the raylet."""
    calls: list


class CancelTask(NamedTuple):
    task_id: bytes
    force: bool


class InterruptCall(NamedTuple):
    """Cancel a call sent straight to an actor's process (the raylet never saw it)."""
    actor_id: bytes
    task_id: bytes


class Promote(NamedTuple):
    """A driver hands the raylet objects it kept to itself (results of direct actor calls),
    because a ref to them is leaving the process: ``pending`` ids have no value yet (it
    follows in a later Promote); ``ready``: [[object_id, kind, data, size, contained], ...]."""
    pending: list
    ready: list


class AdoptResults(NamedTuple):
    """An actor's process stores the results of a direct call that the raylet must manage
    (in plasma, or holding refs), on behalf of the caller ``holder``."""
    holder: bytes
    results: list


class StatusRequest(NamedTuple):
    request_id: int
    what: str  # "status" | "memory" | "tasks" | "timeline" | "timeline:<since>" (node/raylet/_status.py)


class StopNode(NamedTuple):
    pass


class KVPut(NamedTuple):
    """Store ``data`` under ``key`` (the node's small key-value store)."""
    request_id: int
    key: str
    data: bytes
    contained: list  # object ids ``data`` refers to: kept alive while the key exists
    overwrite: bool


class KVGet(NamedTuple):
    """Read a key; with ``wait`` the reply comes when the key is set."""
    request_id: int
    key: str
    wait: bool


class ReturnAddress(NamedTuple):
    """A driver listens here: workers may send its tasks' results straight to it,
    saving the raylet hop on the way back (the raylet still gets them, for others)."""
    path: str


class WatchStart(NamedTuple):
    """Tell me (TaskStarted) when these tasks of mine start running."""
    task_ids: list


class Goodbye(NamedTuple):
    """A client disconnects cleanly; everything it holds is released."""
    pass


# ---------------------------------------------------------------- raylet -> client
class Welcome(NamedTuple):
    version: int
    node_id: bytes
    session_dir: str
    plasma_socket: str
    num_cpus: float
    config: dict


class Refused(NamedTuple):
    reason: str


class ExecuteTask(NamedTuple):
    task_id: bytes
    function_id: bytes
    name: str
    function_blob: Optional[bytes]  # sent once per worker and function
    sys_path: Optional[list]  # with function_blob: the submitter's import path
    args: Any
    args_object: Optional[bytes]
    deps: list  # [[object_id, kind, data], ...] values of top-level ref args
    num_returns: int
    retry_exceptions: Any
    job_id: bytes
    attempt: int
    actor_id: Optional[bytes]
    method: Optional[str]
    concurrency: int  # with method "__init__": the actor's max_concurrency
    reply_to: Optional[str]  # a socket of the submitter: send the results there directly
    inline: bool  # handed to a worker blocked in get(): run it now, inside the wait
    gpu_ids: Optional[list] = None  # the GPU devices it holds: CUDA_VISIBLE_DEVICES while it runs
    runtime_env: Optional[dict] = None  # as SubmitTask.runtime_env


class ObjectValue(NamedTuple):
    object_id: bytes
    kind: int
    data: Any


class LogLines(NamedTuple):
    prefix: str
    text: str


class Warning_(NamedTuple):
    message: str


class StatusReply(NamedTuple):
    request_id: int
    body: dict


class KVReply(NamedTuple):
    request_id: int
    found: bool
    data: Optional[bytes]
    error: str  # "" when the request succeeded


class ActorReply(NamedTuple):
    request_id: int
    actor_id: Optional[bytes]
    meta: Optional[bytes]
    error: str  # "" on success


class TaskStarted(NamedTuple):
    task_id: bytes


class Interrupt(NamedTuple):
    """Cancel the running task (best effort)."""
    task_id: bytes


# ---------------------------------------------------------------- driver <-> actor process, direct

class DirectHello(NamedTuple):
    """First frame a driver sends on a direct connection to an actor's process."""
    caller: bytes  # the driver's identity at the raylet (its job id)


class CallDone(NamedTuple):
    """An actor's process (or a leased worker) answers a direct call. results as in
    TaskDone; ``adopted``: the process registered them with the raylet (AdoptResults) for
    the caller; ``ran``: seconds the call ran there."""
    task_id: bytes
    results: list
    adopted: bool
    ran: float = 0.0


# ---------------------------------------------------------------- raylet <-> head (TCP, CURVE)

class NodeJoin(NamedTuple):
    """A raylet joins the cluster (first message on its link to the head)."""
    version: int
    node_id: bytes
    host: str
    pid: int
    resources: dict  # totals, CPU included
    address: str  # where its store serves objects (HOST:PORT): how other nodes reach it
    calls: str = ""  # where its raylet takes actor calls straight from other nodes (HOST:PORT)


class JoinReply(NamedTuple):
    ok: bool
    reason: str  # why it was refused ("" when ok)
    head_node_id: bytes


class Heartbeat(NamedTuple):
    """Every second: the node's load, for placement and failure detection."""
    node_id: bytes
    available: dict
    backlog: int  # tasks ready to run that wait for a worker or resources
    running: int
    store_used: int
    received: int = 0  # RunTasks this node had received from the head when it sent this (the
    #                    head's book of free CPUs, scheduler/_balance.py); sent early when a CPU frees


class SpillTask(NamedTuple):
    """A task its owner node wants run elsewhere (or placed by the head: the head may hand
    it back to its owner). ``spec`` is the SubmitTask's fields; ``deps`` the values of its
    ref arguments [[object_id, kind, data], ...]; ``function``: [name, blob, sys_path]."""
    owner: bytes  # node id of the node that owns the task's results
    spec: list
    deps: list
    function: list
    owner_backlog: int  # tasks waiting at the owner now (fresher than its last heartbeat)


class RunTask(NamedTuple):
    """The head hands a spilled task to a node (fields as SpillTask)."""
    owner: bytes
    spec: list
    deps: list
    function: list


class TaskResult(NamedTuple):
    """A spilled task finished on ``node``: its results, on their way back to ``owner``.
    results: [[object_id, kind, data, size, contained], ...], plasma values as locations
    (VALUE_REMOTE) the owner pulls; ``extras``: the same for the objects the results hold
    refs to (made on ``node``), so they live on where the results go."""
    owner: bytes
    node: bytes
    task_id: bytes
    results: list
    extras: list


class TaskLost(NamedTuple):
    """The node running a spilled task died: its owner retries or fails it."""
    owner: bytes
    task_id: bytes
    reason: str


class SpillActor(NamedTuple):
    """An actor its owner node cannot host: the head places it by its resources.
    ``create``: the CreateActor's fields; the rest as in SpillTask (its __init__ call)."""
    owner: bytes
    create: list
    spec: list
    deps: list
    function: list


class RunActor(NamedTuple):
    """The head hands an actor to the node that will host it (fields as SpillActor)."""
    owner: bytes
    create: list
    spec: list
    deps: list
    function: list


class RouteCall(NamedTuple):
    """A call to an actor that lives on another node: the head sends it on (as RunTask) to
    that node, in the order calls reach it. deps as in SpillTask."""
    owner: bytes
    spec: list
    deps: list


class ActorRoute(NamedTuple):
    """Head -> the node of a caller whose call it passed on to an actor: where the actor
    lives, and where that node's raylet takes calls (HOST:PORT, CURVE like the head's
    socket); the caller's node sends the later calls straight there, and their results
    come back the same way (node/cluster/_peer_calls.py)."""
    actor_id: bytes
    node_id: bytes
    address: str


class TaskRan(NamedTuple):
    """Worker -> the submitting driver, on its result socket just before a task's results
    (ObjectValue): how long the task ran there, in seconds (first result's id). The driver
    sends a function's tasks through its worker leases only while they are short
    (_driver/_leases.py); the time from submit to result would count the queue in front."""
    object_id: bytes
    ran: float


class ActorHosted(NamedTuple):
    """A node tells the head it hosts an actor (so calls and lookups from anywhere find it)."""
    actor_id: bytes
    node_id: bytes
    name: str
    namespace: str
    meta: bytes


class ActorRestartSpec(NamedTuple):
    """A node hosts a detached actor with restarts left that it created itself: how to
    start it elsewhere should the node die (fields as SpillActor; the head becomes the
    owner of its constructor's result)."""
    owner: bytes
    create: list
    spec: list
    deps: list
    function: list


class ActorGone(NamedTuple):
    """The actor died for good: the head forgets where it lived and its name."""
    actor_id: bytes


class RouteKill(NamedTuple):
    actor_id: bytes
    no_restart: bool


class ActorLookup(NamedTuple):
    """A node asks the head for a named actor (get_actor) it does not host itself."""
    request_id: int
    name: str
    namespace: str


class ActorFound(NamedTuple):
    request_id: int
    actor_id: Optional[bytes]
    meta: Optional[bytes]


class RemoteLog(NamedTuple):
    """Output of a task run for another node, on its way to its owner's driver."""
    owner: bytes
    task_id: bytes
    prefix: str
    text: str


class FreeRemote(NamedTuple):
    """The owner pulled (or no longer needs) the results that ``node`` keeps for it under ``key``."""
    node: bytes
    key: bytes


class NodeDied(NamedTuple):
    """The head to every live node: ``node_id`` is dead. Owners fail or rebuild the objects
    whose only copy was there (lineage), and drop its borrows; pulls from it fail now
    instead of stalling."""
    node_id: bytes
    reason: str


class Borrow(NamedTuple):
    """A borrower node to the owner of objects (through the head): refs to them reached
    ``borrower`` (``added``: keep them while it holds them), or it dropped them all
    (``removed``). The owner frees an object only when it and every borrower dropped it."""
    owner: bytes
    borrower: bytes
    added: list
    removed: list


class PullRequest(NamedTuple):
    """Node to node (object transfer socket, every frame sealed: transport/_sealed.py): send
    ``length`` bytes of an object's block from ``offset``. The answer is a PullChunk record
    followed by one payload frame, the chunk's ciphertext and tag."""
    object_id: bytes
    offset: int
    length: int


class PullChunk(NamedTuple):
    """Header of a chunk of an object's block; ``total`` is the block's size, or -1 if the
    object is not in this node's store (``error`` says why). ``nonce`` seals the payload;
    its associated data is the object id, offset and total (node/cluster/_transfer.py)."""
    object_id: bytes
    offset: int
    total: int
    error: str
    nonce: bytes


class TaskEvents(NamedTuple):
    """A member's task events since its last batch (about once a second), for the head's
    cluster-wide view (node/events/_event_view.py). ``rows``: the ended attempts, as
    [[count, msgpack blob], ...], each blob the flat fields of rows [task_id, name, node_id,
    worker_id, pid, submit, start, end, state, submitter_node, submitter_pid, error]
    (node/events/_events.py), ``n`` rows in all, the latest ending at ``newest``; ``counts``: {name: [finished, failed]} of the batch (the rows may
    be cut to the newest, the counts are not); ``failures``: the rows of failed attempts;
    ``origins``: [[task_id, submit, submitter_pid]] of its tasks that other nodes ran;
    ``current``: what it runs and holds now (queued and running counts by function,
    running tasks, actors, pending demands, resources, workers, store, memory)."""
    node_id: bytes
    rows: list
    n: int
    newest: float
    counts: dict
    failures: list
    origins: list
    current: dict


class ClusterStatusRequest(NamedTuple):
    request_id: int


class ClusterStatusReply(NamedTuple):
    request_id: int
    nodes: list  # one dict per node


class HoldLimit(NamedTuple):
    """Raylet -> its pool workers: how many tasks that their tasks submit each may keep to
    run itself (SubmitTask.held). 0 on a node of a cluster of several nodes: its tasks go
    through the raylet, where spillover sees them."""
    tasks: int


# ---------------------------------------------------------------- worker leases (issue 18)
class LeaseRequest(NamedTuple):
    """A driver asks for a pool worker of its own for a while (a lease): it then sends
    plain tasks of this resource shape straight to that worker and gets the results
    straight back, two hops instead of four (_driver/_leases.py)."""
    request_id: int
    resources: dict


class LeaseGranted(NamedTuple):
    """Raylet -> driver: the lease, the socket its worker listens on and that worker's pid."""
    request_id: int
    lease_id: bytes
    socket: str
    pid: int


class LeaseReturn(NamedTuple):
    """Driver -> raylet: the lease is given back (nothing sent there is unanswered)."""
    lease_id: bytes


class LeaseRevoke(NamedTuple):
    """Raylet -> driver: give the lease back once what was sent there is answered (other
    work waits for a worker)."""
    lease_id: bytes


class Lease(NamedTuple):
    """Raylet -> worker: take the tasks ``caller`` (a driver's identity) sends you directly
    until LeaseEnd; say LeaseReady once you listen."""
    lease_id: bytes
    caller: bytes


class LeaseReady(NamedTuple):
    """Worker -> raylet: it listens for the lease's caller."""
    lease_id: bytes


class LeaseEnd(NamedTuple):
    """Raylet -> worker: the lease is over."""
    lease_id: bytes


class CancelLeased(NamedTuple):
    """Driver -> raylet: cancel a task sent straight to the lease's worker."""
    lease_id: bytes
    task_id: bytes
    force: bool


class ReclaimLeased(NamedTuple):
    """Driver -> raylet: tasks wait behind a long one at the lease's worker: have it hand
    back those it has not started (its control pipe, as for the raylet's own reclaim)."""
    lease_id: bytes


# ---------------------------------------------------------------- placement groups (issue 20)
class PlacementGroupOp(NamedTuple):
    """A client's request about placement groups (op "create", "remove", "table"), to its
    raylet, which passes it on to the head of its cluster (who keeps the groups); answered
    with a PlacementGroupReply. ``bundles``: a list of resource dicts."""
    request_id: int
    op: str
    pg_id: bytes  # b"": every group (op "table")
    name: str
    bundles: list
    strategy: str
    detached: bool
    job: bytes = b""  # set by the raylet: the job whose group it is (its driver's id)


class PlacementGroupReply(NamedTuple):
    request_id: int
    error: str  # "" when it worked
    table: list  # op "table": one dict per group (see node/raylet/_groups.py)


class BundleOp(NamedTuple):
    """From whoever keeps the groups to the node of one bundle: "prepare" (hold
    ``resources`` now, if free now), "commit" (lend them under the names ``renamed``),
    "release" (give them back; what runs in the bundle is killed)."""
    op: str
    pg_id: bytes
    index: int
    resources: dict
    renamed: dict


class BundleReply(NamedTuple):
    """A node's answer to a "prepare": whether it holds the bundle."""
    pg_id: bytes
    index: int
    node_id: bytes
    ok: bool


MESSAGE_TYPES = (
    Hello, RegisterFunction, SubmitTask, PutObject, GetObjects, RefDelta, Blocked,
    Unblocked, TaskDone, CancelTask, StatusRequest, StopNode, Goodbye,
    Welcome, Refused, ExecuteTask, ObjectValue, LogLines, Warning_, StatusReply, Interrupt,
    KVPut, KVGet, KVReply, CreateActor, KillActor, GetActor, ActorReply, WatchStart, TaskStarted,
    ReturnAddress, InterruptCall, Promote, AdoptResults, DirectHello, CallDone,
    NodeJoin, JoinReply, Heartbeat, SpillTask, RunTask, TaskResult, TaskLost,
    ClusterStatusRequest, ClusterStatusReply, FreeRemote, PullRequest, PullChunk,
    SpillActor, RunActor, RouteCall, RouteKill, ActorLookup, ActorFound, ActorHosted,
    ActorGone, RemoteLog, ActorRestartSpec, ReturnTasks, CallsDone, TaskEvents, HoldLimit,
    LeaseRequest, LeaseGranted, LeaseReturn, LeaseRevoke, Lease, LeaseReady, LeaseEnd, CancelLeased,
    ReclaimLeased, PlacementGroupOp, PlacementGroupReply, BundleOp, BundleReply,
    NodeDied, Borrow, ActorRoute, TaskRan,
)

__all__ = [c.__name__ for c in MESSAGE_TYPES] + [
    "PROTOCOL_VERSION", "VALUE_INLINE", "VALUE_PLASMA", "VALUE_ERROR", "VALUE_REMOTE",
    "KIND_DRIVER", "KIND_WORKER", "KIND_CLI", "RECLAIM",
]
