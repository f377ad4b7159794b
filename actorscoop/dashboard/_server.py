"""The dashboard's HTTP server: the static page, the JSON reports, /health, /metrics."""
import gzip
import json
import logging
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ._auth import Guard
from ._metrics import CONTENT_TYPE as METRICS_TYPE, metrics_text
from ._source import RayletUnavailable
from ._views import nodes_view

log = logging.getLogger("actorscoop.dashboard")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_SECURITY_HEADERS = {
    # Everything the page loads comes from here: no CDN, no other site, no inline script.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a ?token= never leaves in a Referer
    "Cache-Control": "no-store",
}
_GZIP_FROM = 32 << 10  # compress JSON bodies larger than this when the client accepts it
# /api/timeline?since=T asks the raylet for the smallest of these windows that holds T (the
# page shows the last 1, 5 or 10 minutes), so that it builds no more than that
_WINDOWS = (65.0, 305.0, 605.0)


class NoTaskData(Exception):
    """The node answers no task report (an older raylet)."""


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock, source, guard: Guard):
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()  # the socket TCPServer made: we serve the one we were given
        self.socket = sock
        self.server_address = sock.getsockname()
        self.source = source
        self.guard = guard
        self.static = {}  # name -> (content type, bytes): the page is small, keep it in memory
        for name in os.listdir(STATIC_DIR):
            kind = _TYPES.get(os.path.splitext(name)[1])
            if kind is not None:
                with open(os.path.join(STATIC_DIR, name), "rb") as f:
                    self.static[name] = (kind, f.read())

    # -- the reports -------------------------------------------------------------------
    def report(self, what):
        return self.source.get(what)

    def tasks(self):
        body = self.report("tasks")
        if not isinstance(body, dict) or "by_state" not in body:
            raise NoTaskData("this node does not report tasks (an older actorscoop?)")
        return body

    def nodes(self):
        return nodes_view(self.report("status"), time.time())

    def timeline(self, since=None):
        window = None if since is None else next(
            (w for w in _WINDOWS if time.time() - since <= w), None)
        if window is None:
            body = self.report("timeline")
        else:
            body = self.source.get(f"timeline/{window:g}",
                                   lambda: f"timeline:{time.time() - window:.3f}")
        if not isinstance(body, dict) or "events" not in body:
            raise NoTaskData("this node does not report a timeline (an older actorscoop?)")
        if since is None:
            return body
        return {**body, "events": [e for e in body["events"]
                                   if e.get("end") is None or e["end"] >= since]}

    def metrics(self):
        try:
            tasks = self.tasks()
        except NoTaskData:
            tasks = None
        return metrics_text(self.nodes(), tasks)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a polling page reuses its connection
    timeout = 60  # an idle keep-alive connection is closed after this long
    server_version = "actorscoop-dashboard"
    sys_version = ""

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head=False):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        verdict = self.server.guard.check(self.headers, (query.get("token") or [None])[0])
        if verdict.status != 200:
            extra = {"WWW-Authenticate": 'Bearer realm="actorscoop"'} if verdict.status == 401 else {}
            return self._json(verdict.status, {"error": verdict.reason}, extra, head)
        cookie = {"Set-Cookie": verdict.set_cookie} if verdict.set_cookie else {}
        if cookie and url.path == "/":  # the token leaves the address bar and the history
            return self._send(303, b"", "text/plain", {**cookie, "Location": "/"}, head)
        try:
            self._route(url.path, query, cookie, head)
        except NoTaskData as exc:
            self._json(503, {"error": str(exc), "no_task_data": True}, cookie, head)
        except RayletUnavailable as exc:
            self._json(503, {"error": str(exc)}, cookie, head)
        except (ConnectionError, TimeoutError):
            raise  # the viewer went away: http.server drops the connection
        except Exception as exc:  # a bug here must not look like a network failure to the page
            log.exception("GET %s failed", url.path)
            self._json(500, {"error": f"{type(exc).__name__}: {exc} (see the dashboard's log)"},
                       cookie, head)

    def _route(self, path, query, extra, head):
        s = self.server
        if path in ("/", "/index.html"):
            return self._file("index.html", extra, head)
        if path.startswith("/static/") and path[8:] in s.static:
            return self._file(path[8:], extra, head)
        if path == "/health":
            s.report("status")  # raises RayletUnavailable when the node does not answer
            return self._json(200, {"ok": True}, extra, head)
        if path == "/metrics":
            return self._send(200, s.metrics().encode(), METRICS_TYPE, extra, head)
        if path == "/api/status":
            return self._json(200, s.report("status"), extra, head)
        if path == "/api/nodes":
            return self._json(200, s.nodes(), extra, head)
        if path == "/api/tasks":
            return self._json(200, s.tasks(), extra, head)
        if path == "/api/timeline":
            since = _float(query.get("since"))
            return self._json(200, s.timeline(since), extra, head)
        self._json(404, {"error": f"no such page: {path}; see /, /api/status, /api/nodes, "
                                  "/api/tasks, /api/timeline, /health, /metrics"}, extra, head)

    def do_POST(self):
        self._json(405, {"error": "the dashboard is read-only: use GET"}, {"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    # -- replies -------------------------------------------------------------------------
    def _file(self, name, extra, head):
        kind, body = self.server.static[name]
        self._send(200, body, kind, extra, head)

    def _json(self, status, body, extra=None, head=False):
        self._send(status, json.dumps(body, separators=(",", ":")).encode(),
                   "application/json", extra or {}, head)

    def _send(self, status, body, content_type, extra, head=False):
        headers = {**_SECURITY_HEADERS, "Content-Type": content_type, **extra}
        if len(body) > _GZIP_FROM and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # a polling page makes several requests a second: no access log

    def log_error(self, format, *args):  # noqa: A002
        log.warning("%s: " + format, self.address_string(), *args)


def _float(values):
    try:
        return float(values[0]) if values else None
    except ValueError:
        return None
