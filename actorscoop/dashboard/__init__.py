"""The dashboard: a small HTTP server, in a process of its own, that the head node starts
and stops with itself (see docs/dashboard.md).

``python -m actorscoop.dashboard`` serves a static page (``static/``), the JSON reports of
the node's raylet (``/api/status``, ``/api/tasks``, ``/api/timeline``), ``/health`` and
Prometheus ``/metrics``. It asks the raylet over the node's Unix socket, at most about
once a second whatever the number of viewers, and never touches the task path.
"""
DEFAULT_PORT = 8265
