"""What is measured, on which systems, and what actorscoop is judged against."""

SYSTEMS = {
    # key: label in tables, runner file, how it is launched, whether it can nest
    "actorscoop": {"label": "actorscoop", "runner": "actorscoop_peer.py", "nests": True},
    "ray": {"label": "Ray", "runner": "ray_peer.py", "nests": True},
    "ppe": {"label": "ProcessPoolExecutor(2)", "runner": "ppe_peer.py", "nests": False},
    "pool": {"label": "multiprocessing.Pool(2)", "runner": "mp_pool_peer.py", "nests": False},
    "loky": {"label": "loky", "runner": "loky_peer.py", "nests": False},
    "dask": {"label": "Dask (LocalCluster, 2 procs)", "runner": "dask_peer.py", "nests": True},
    "scoop": {"label": "SCOOP (-n 2)", "runner": "scoop_peer.py", "nests": True,
              "launcher": ["-m", "scoop", "-n", "2"]},
}

ALIASES = {
    "processpoolexecutor": "ppe", "concurrent.futures": "ppe", "executor": "ppe",
    "multiprocessing": "pool", "mp": "pool", "multiprocessing.pool": "pool",
    "asc": "actorscoop", "distributed": "dask",
}

WORKLOADS = {
    "roundtrip": {
        "title": "1. Single-task round-trip latency",
        "what": "Submit one no-op task and wait for its result, one at a time; median over "
                "2,000 calls after 200 warm-up calls (quick: 200 after 20).",
        "unit": "µs", "better": "lower", "nested": False,
    },
    "throughput": {
        "title": "2. No-op task throughput",
        "what": "Submit 10,000 no-op tasks, then gather all results; median rate of 3 "
                "repetitions after a 500-task warm-up (quick: 1 × 1,000).",
        "unit": "tasks/s", "better": "higher", "nested": False,
    },
    "fib15": {
        "title": "3a. Nested recursive fib(15)",
        "what": "Every call with n >= 2 submits fib(n-1) and fib(n-2) as tasks and waits for "
                "them (1,973 tasks). Median of up to 3 runs after a fib(4) warm-up.",
        "unit": "s", "better": "lower", "nested": True,
    },
    "fib16": {
        "title": "3b. Nested recursive fib(16)",
        "what": "As fib(15), 3,193 tasks.",
        "unit": "s", "better": "lower", "nested": True,
    },
    "init": {
        "title": "4. Start-up: process start to first result",
        "what": "A fresh interpreter, as a user's script runs: imports, init() / pool or cluster "
                "creation, one no-op, its result. The value is from the process's spawn to the "
                "first result (SCOOP's includes its launcher); the notes give init() to first "
                "result, the whole process (spawn to exit) and the shutdown. Median of 3 fresh "
                "processes (quick: 1).",
        "unit": "s", "better": "lower", "nested": False,
    },
}

# (workload, peer, factor, text): PASS when actorscoop's advantage over the peer
# (see _report.advantage, >1 means actorscoop better) is at least ``factor``.
TARGETS = [
    ("roundtrip", "ray", 4.0, "round trip ≤ 1/4 of Ray's"),
    ("roundtrip", "ppe", 1 / 1.5, "round trip ≤ 1.5× ProcessPoolExecutor(2)'s"),
    ("throughput", "ray", 5.0, "throughput ≥ 5× Ray's"),
    ("throughput", "ppe", 1.0, "throughput ≥ ProcessPoolExecutor(2)'s"),
    ("fib15", "ray", 20.0, "fib(15) ≥ 20× faster than Ray"),
    ("fib16", "ray", 20.0, "fib(16) ≥ 20× faster than Ray"),
    ("init", "ray", 5.0, "start-up ≤ 1/5 of Ray's"),
    # issue 18: the cost of a small script, and the per-task cost
    ("init", "scoop", 1.0, "process start to first result ≤ SCOOP's"),
    ("roundtrip", "ppe", 1 / 0.6, "round trip ≤ 0.6× ProcessPoolExecutor(2)'s"),
    ("throughput", "ppe", 1.5, "throughput ≥ 1.5× ProcessPoolExecutor(2)'s"),
]

# (workload, extra key, limit in seconds, text): PASS when actorscoop's value is at most that
ABSOLUTE = [
    ("init", "whole_process_s", 0.4, "whole process (spawn to exit) ≤ 0.4 s"),
    ("init", "shutdown_s", 0.15, "shutdown() ≤ 0.15 s"),
]
