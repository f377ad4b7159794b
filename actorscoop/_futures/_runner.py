"""What a futures task runs in the worker, and how its arguments travel.

A task of ``futures.submit`` or of one ``futures.map`` chunk runs a ``_Runner`` that
wraps the user's function. The arguments are pickled here, in the caller, into one
bytes blob (large array buffers travel beside it, out of band), so the worker unpickles
them inside the runner. That lets the runner recover from a failed unpickling the way
SCOOP and multiprocessing do: classes that the driver's script creates at import time
(DEAP's ``creator.create``) do not exist in a fresh worker, so the runner imports the
driver's main script once, as ``__mp_main__`` (its ``if __name__ == "__main__"`` block
does not run), and tries again.
"""
import collections
import os
import pickle
import runpy
import sys
import threading
import types
import weakref


from .._common import _errors, _serialization
from .._client._object_ref import ObjectRef
from .._client._remote_function import RemoteFunction

SINGLE, CHUNK, REDUCE = "single", "chunk", "reduce"


class Failed:
    """A chunk whose function raised at item ``len(values)``: the values before it and
    the error (packed like a task error, so it comes back with its type and remote
    traceback)."""
    __slots__ = ("values", "error")

    def __init__(self, values, error):
        self.values = values
        self.error = error

    def __reduce__(self):
        return (Failed, (self.values, self.error))

    def exception(self):
        return _errors.unpack(self.error)


class Slot:
    """Stands in, inside the pickled arguments, for a top-level ObjectRef (or Future)
    argument that travels as a task dependency; the worker puts its value there."""
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def __reduce__(self):
        return (Slot, (self.index,))


# ---------------------------------------------------------------------- the driver's side
def main_info():
    """How a worker can import the driver's main module: ("module", name), ("path", file)
    or None (interactive session, or a ``__main__.py`` of a tool such as pytest)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if name and not name.endswith("__main__"):
        return ("module", name)
    path = getattr(main, "__file__", None)
    if path and path.endswith(".py") and os.path.basename(path) != "__main__.py":
        return ("path", os.path.abspath(path))
    return None


_FAST_LIMIT = 64 * 1024  # bytes: bigger values take the zero-copy path of the core


def _fast_dumps(value):
    """Plain pickle when it gives the same result as cloudpickle, much faster: no
    ``__main__`` object (cloudpickle sends those by value), no ObjectRef (the core must
    see them), small. None otherwise."""
    try:
        stream = pickle.dumps(value, protocol=5)
    except Exception:
        return None
    if len(stream) > _FAST_LIMIT or b"__main__" in stream or b"actorscoop." in stream:
        return None
    return stream


def pack(payload):
    """Pickle ``payload`` for a runner: (blob, extra) where extra holds the refs found
    inside (so they live as long as the task) and the out-of-band buffers, or None."""
    stream = _fast_dumps(payload)
    if stream is not None:
        return stream, None
    stream, buffers, contained, _nbytes = _serialization.dumps(payload)
    if not buffers and not contained:
        return stream, None
    return stream, ([ObjectRef(o) for o in contained], [pickle.PickleBuffer(b) for b in buffers])


def unpack_values(value):
    """A chunk task's value as the caller sees it: a list of values, or Failed."""
    if type(value) is bytes:
        return pickle.loads(value)
    return value


def split_refs(args, ref_of):
    """Replace top-level ObjectRefs (and our Futures) in ``args`` by Slots; return
    (args, deps). ``ref_of(x)`` gives the ref standing for ``x`` or None."""
    deps = []
    out = None
    for i, a in enumerate(args):
        ref = ref_of(a)
        if ref is not None:
            if out is None:
                out = list(args)
            out[i] = Slot(len(deps))
            deps.append(ref)
    return (args if out is None else tuple(out)), deps


# ---------------------------------------------------------------------- the worker's side
_main_lock = threading.Lock()
_main_imported = False


def _import_driver_main(info):
    """Import the driver's main module under another name, once per process.
    Returns True when this call imported it (so a retry may now succeed)."""
    global _main_imported
    with _main_lock:
        if _main_imported or info is None:
            return False
        _main_imported = True
    kind, where = info
    if kind == "module":
        __import__(where)
    else:
        module = types.ModuleType("__mp_main__")
        sys.modules["__mp_main__"] = module
        module.__dict__.update(runpy.run_path(where, run_name="__mp_main__"))
    return True


def _loads(blob, buffers, info):
    try:
        return pickle.loads(blob, buffers=buffers)
    except Exception:
        if not _import_driver_main(info):
            raise
    return pickle.loads(blob, buffers=buffers)


def _restore_runner(kind, fn_blob, name, info):
    return _Runner(kind, _loads(fn_blob, None, info), fn_blob, name, info)


class _Runner:
    """The function a futures task runs: unpacks the arguments, calls the user's
    function once (SINGLE), over a chunk of argument tuples (CHUNK), or over a chunk
    and then folds the values with a reduction (REDUCE)."""

    def __init__(self, kind, fn, fn_blob, name, info):
        self.kind, self.fn, self.fn_blob, self.info = kind, fn, fn_blob, info
        self.__name__ = name
        self.__qualname__ = name

    def __reduce__(self):
        return (_restore_runner, (self.kind, self.fn_blob, self.__name__, self.info))

    def __call__(self, blob, extra, *deps):
        buffers = extra[1] if extra is not None else None
        payload = _loads(blob, buffers, self.info)
        if self.kind == SINGLE:
            args, kwargs = payload
            if deps:
                args = tuple(deps[a.index] if type(a) is Slot else a for a in args)
            return self.fn(*args, **kwargs) if kwargs else self.fn(*args)
        if self.kind == CHUNK:
            return self._chunk(payload)
        items, op = payload
        return self._reduce(items, op)

    def _chunk(self, items):
        fn = self.fn
        values = []
        try:
            for args in items:
                values.append(fn(*args))
        except (Exception, SystemExit) as exc:
            return Failed(values, self._pack_error(exc))
        return _fast_dumps(values) or values

    def _reduce(self, items, op):
        fn = self.fn
        acc = None
        for i, args in enumerate(items):
            try:
                value = fn(*args)
                acc = value if i == 0 else op(acc, value)
            except (Exception, SystemExit) as exc:
                return Failed([], self._pack_error(exc))
        return _fast_dumps([acc]) or [acc]

    def _pack_error(self, exc):
        from .._client import _context
        core = _context.current_or_none()
        node = getattr(core, "node_hex", "") or ""
        return _errors.pack_task_error(self.__name__, exc, node, os.getpid(), "executing")


# ---------------------------------------------------------------------- remote functions
class _Registry:
    """RemoteFunctions of runners, so the node learns each function once.

    Plain module-level functions are keyed by identity (their state is their code, as in
    any process pool); anything else (closures, bound methods, callable objects) is
    pickled per call and keyed by its bytes, so a changed closure is never stale."""

    def __init__(self, size=256):
        self._by_fn = weakref.WeakKeyDictionary()
        self._by_blob = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, kind, fn, info):
        plain = type(fn) is types.FunctionType and fn.__closure__ is None
        if plain:
            per_kind = self._by_fn.get(fn)
            if per_kind is not None and kind in per_kind:
                return per_kind[kind]
        blob = _serialization.dumps_function(fn)
        key = (kind, blob, info)
        with self._lock:
            rf = self._by_blob.get(key)
            if rf is not None:
                self._by_blob.move_to_end(key)
        if rf is None:
            name = getattr(fn, "__name__", None) or type(fn).__name__
            rf = RemoteFunction(_Runner(kind, fn, blob, name, info))
            with self._lock:
                self._by_blob[key] = rf
                while len(self._by_blob) > self._size:
                    self._by_blob.popitem(last=False)
        if plain:
            with self._lock:
                self._by_fn.setdefault(fn, {})[kind] = rf
        return rf


    def forget(self, rf):
        """Stop reusing ``rf``: the next call registers the function afresh.

        Called after a cancel. A worker skips a task cancelled before it started
        without loading its function, while the raylet counts the function as sent to
        that worker; a new registration (a new function id) sidesteps that."""
        with self._lock:
            for key in [k for k, v in self._by_blob.items() if v is rf]:
                del self._by_blob[key]
            for fn, per_kind in list(self._by_fn.items()):
                for kind in [k for k, v in per_kind.items() if v is rf]:
                    del per_kind[kind]


registry = _Registry()

