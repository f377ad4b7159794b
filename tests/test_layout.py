"""The house's shape (issue 15): rooms by role, imports only downward, no cycle, and the
public names pinned, so that moving code around cannot change what users import.

The import graph is read from the source, not from what a run happened to import:
every ``import`` and ``from ... import`` (inside functions too), and every module named in
a string handed to ``importlib.import_module`` or looked up in ``sys.modules``."""
import ast
import importlib
import os

import actorscoop

ROOT = os.path.dirname(actorscoop.__file__)

# Which rooms a room may import (besides itself). Read top to bottom: the command line and
# the public facade use everything below them; node processes use the client core but
# nothing that only a driver runs; the store stands alone.
LOW = {"exceptions", "protocol", "transport", "scheduler", "plasma", "_common"}
MAY_IMPORT = {
    "plasma": set(),
    "scheduler": set(),
    "protocol": set(),
    "transport": {"protocol", "exceptions"},
    "exceptions": {"plasma"},
    "_common": {"exceptions", "protocol", "transport", "plasma"},
    "_client": LOW,
    "node": LOW | {"_client", "dashboard"},
    "dashboard": LOW | {"_client"},
    "_driver": LOW | {"_client"},
    "_futures": LOW | {"_client", "_driver"},
    "_cli": LOW | {"_client", "_driver", "dashboard", "facade"},
    "facade": LOW | {"_client", "_driver", "_futures", "facade"},
}
FACADE = {"", "futures", "shared", "testing", "util", "joblib", "multiprocessing"}


def modules():
    out = {}
    for dirpath, _dirs, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(dirpath, f)
    return out


def room(mod):
    if mod == "__main__":  # `python -m actorscoop`: the command line's door
        return "_cli"
    if mod in FACADE:
        return "facade"
    return mod.split(".")[0]


def _strings(node):
    """Module names in importlib.import_module("...") and sys.modules[...] / .get("...")."""
    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("import_module", "get") \
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        name = node.args[0].value
        if node.func.attr == "get" and not (isinstance(node.func.value, ast.Attribute)
                                            and node.func.value.attr == "modules"):
            return []
        return [name]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
            and node.value.attr == "modules" and isinstance(node.slice, ast.Constant) \
            and isinstance(node.slice.value, str):
        return [node.slice.value]
    return []


def graph():
    mods = modules()
    edges = {}
    for mod, path in mods.items():
        package = mod.split(".") if path.endswith("__init__.py") else mod.split(".")[:-1]
        if mod == "":
            package = []
        targets = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
                    base = "actorscoop." + ".".join(base) if base else "actorscoop"
                else:
                    base = node.module or ""
                names = [f"{base}.{a.name}" for a in node.names]  # a module, or a name in one
            else:
                names = _strings(node)
            for name in names:
                if name == "actorscoop" or name.startswith("actorscoop."):
                    rel = name[len("actorscoop."):] if name != "actorscoop" else ""
                    # the deepest module this name is (or is inside of)
                    while rel not in mods and "." in rel:
                        rel = rel.rsplit(".", 1)[0]
                    if rel in mods and rel != mod:
                        targets.add(rel)
        # a module's own packages are not edges (importing a.b.c runs a and a.b anyway)
        edges[mod] = {t for t in targets if not (t and mod.startswith(t + "."))}
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles (counting imports inside functions): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_imports_point_down():
    wrong = []
    for mod, targets in graph().items():
        mine = room(mod)
        for t in targets:
            theirs = room(t)
            if theirs != mine and theirs not in MAY_IMPORT[mine]:
                wrong.append(f"{mod or 'actorscoop'} ({mine}) imports {t or 'actorscoop'} ({theirs})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(sorted(wrong))


def test_the_graph_sees_what_it_must():
    """The checks above can fail: the graph holds imports inside functions and the rooms."""
    edges = graph()
    assert "_client._context" in edges["_driver._api"]
    assert "node.worker._main" in edges["node.worker._zygote"]  # imported inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert room("node.raylet._raylet") == "node" and room("futures") == "facade"


def test_no_module_is_a_house_of_its_own():
    """Past ~800 lines a module is usually two (STYLE.md)."""
    big = {mod: n for mod, path in modules().items() if (n := sum(1 for _ in open(path))) > 850}
    assert not big, f"modules over 850 lines: {big}"


HELPERS = ("node/raylet/_actors.py", "node/raylet/_kv.py", "node/raylet/_memory_monitor.py",
           "node/raylet/_status.py", "node/cluster/_link.py", "node/cluster/_head.py",
           "node/cluster/_transfer.py", "node/events/_recorder.py")


def test_the_raylets_helpers_reach_it_only_through_their_ports():
    """A helper holds a port (node/raylet/_ports.py), never the raylet: no private name of
    what it holds (``self.raylet._x``, ``self.r._x``, ``link.r``) is touched."""
    wrong = []
    for rel in HELPERS:
        path = os.path.join(ROOT, rel)
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr in ("r", "raylet") and node.attr.startswith("_"):
                wrong.append(f"{rel}:{node.lineno} .{node.value.attr}.{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "r" and isinstance(node.value, ast.Attribute):
                wrong.append(f"{rel}:{node.lineno} reaches the raylet through .{node.value.attr}.r")
    assert not wrong, "helpers touching the raylet's insides:\n" + "\n".join(wrong)


PUBLIC = {
    "actorscoop": ["ActorClass", "ActorHandle", "ObjectRef", "RemoteFunction", "RuntimeContext", "__version__",
                   "available_resources", "cancel", "cluster_resources", "exceptions", "get", "get_actor",
                   "get_gpu_ids", "get_runtime_context", "init", "is_initialized", "kill", "method", "nodes", "put", "remote",
                   "shutdown", "timeline", "tqdm", "wait"],
    "actorscoop.futures": ["ALL_COMPLETED", "Executor", "FIRST_COMPLETED", "FIRST_EXCEPTION", "Future",
                           "as_completed", "map", "mapReduce", "mapScan", "map_as_completed", "shutdown",
                           "submit", "wait"],
    "actorscoop.shared": ["getConst", "setConst"],
    "actorscoop.exceptions": ["ActorDiedError", "ActorScoopError", "GetTimeoutError", "NodeDiedError",
                              "ObjectLostError", "ObjectStoreFullError", "OutOfMemoryError",
                              "RuntimeNotInitializedError", "TaskCancelledError", "TaskError", "WorkerCrashedError",
                              "TaskPlacementGroupRemoved", "ActorPlacementGroupRemoved", "OwnerDiedError",
                              "ObjectReconstructionFailedError",
                              "ObjectReconstructionFailedMaxAttemptsExceededError"],
    "actorscoop.testing": ["Cluster"],
    "actorscoop.util": ["ActorPool", "PlacementGroup", "PlacementGroupSchedulingStrategy", "get_placement_group",
                        "placement_group", "placement_group_table", "remove_placement_group"],
    "actorscoop.joblib": ["ActorScoopBackend", "register"],
    "actorscoop.multiprocessing": ["AsyncResult", "Pool"],
    "actorscoop.plasma": ["ObjectID", "ObjectNotAvailable", "PlasmaClient", "connect", "start_plasma_store",
                          "PlasmaObjectExists", "PlasmaObjectNotFound", "PlasmaStoreFull", "StoreClient",
                          "ObjectExistsError", "ObjectNotFoundError", "ObjectStoreFullError",
                          "PlasmaError", "ProtocolError", "StoreHandle", "StoreUnavailableError",
                          "spawn_store", "start_store"],
}


def test_public_names_are_pinned():
    for name, expected in PUBLIC.items():
        mod = importlib.import_module(name)
        assert sorted(mod.__all__) == sorted(expected), name
        for attr in mod.__all__:
            assert getattr(mod, attr) is not None, f"{name}.{attr}"
