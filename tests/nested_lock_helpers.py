"""Module-level locks for tests/test_nested_trees.py: a module a worker imports makes its
own (each process has its copy, as each Ray worker would)."""
import threading

shared_lock = threading.Lock()
shared_rlock = threading.RLock()
