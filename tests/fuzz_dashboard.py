"""Attempts to read a dashboard bound to a non-loopback address (0.0.0.0) without the right
credentials: no token, a wrong one, the right one in the wrong place; and, as a control,
the right one where it belongs. Used by tests/test_fuzz_security.py and the Security part
of ci/reliability_fuzz.py.

Traffic goes to loopback and to this machine's own addresses only (what 0.0.0.0 serves).
"Refused" means an HTTP 401 or 403 whose body holds none of the cluster's data: no node
id, no session directory, no token.
"""
import socket
import urllib.parse

import psutil

from actorscoop.dashboard._auth import COOKIE
from actorscoop.transport import _secure
from test_dashboard import http

PATHS = ["/", "/api/status", "/api/nodes", "/api/tasks", "/metrics", "/static/dashboard.js"]


def own_addresses():
    """This machine's non-loopback IPv4 addresses (a dashboard on 0.0.0.0 answers there)."""
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


def attempts(token):
    """(name, expected, headers, query) of each kind of request; ``expected``: "refused"
    or "served"."""
    other = _secure.new_credentials().token
    q = urllib.parse.quote
    return [
        ("no token", "refused", {}, ""),
        ("a wrong token (another cluster's), as Bearer", "refused", {"Authorization": f"Bearer {other}"}, ""),
        ("a wrong token in ?token=", "refused", {}, f"?token={q(other)}"),
        ("a forged cookie (a made-up value)", "refused", {"Cookie": f"{COOKIE}={'0' * 64}"}, ""),
        ("the right token as Basic credentials", "refused", {"Authorization": f"Basic {token}"}, ""),
        ("the right token with no scheme", "refused", {"Authorization": token}, ""),
        ("the right token in another header (X-Token)", "refused", {"X-Token": token}, ""),
        ("the right token as the cookie's value (it holds an HMAC)", "refused",
         {"Cookie": f"{COOKIE}={token}"}, ""),
        ("the right token under another query name (?auth=)", "refused", {}, f"?auth={q(token)}"),
        ("control: the right token, as Bearer", "served", {"Authorization": f"Bearer {token}"}, ""),
    ]


def run(port, token, secrets, hosts=None):
    """Every attempt on every path, at 127.0.0.1 and this machine's other addresses.
    ``secrets``: texts none of which a refused answer may hold. Returns
    {"bases": [...], "rows": [(name, expected, requests, {status: n}, leaks)], "ok": bool}."""
    hosts = hosts or ["127.0.0.1", *own_addresses()[:1]]
    bases = [f"http://{h}:{port}" for h in hosts]
    rows, ok = [], True
    for name, expected, headers, query in attempts(token):
        statuses, leaks, n = {}, 0, 0
        for base in bases:
            for path in PATHS:
                status, _headers, body = http(base + path + query, headers)
                n += 1
                statuses[status] = statuses.get(status, 0) + 1
                if status in (401, 403) and any(s.encode() in body for s in secrets):
                    leaks += 1
        if expected == "refused":
            good = set(statuses) <= {401, 403} and not leaks
        else:
            good = set(statuses) == {200}
        ok = ok and good
        rows.append((name, expected, n, statuses, leaks))
    return {"bases": bases, "rows": rows, "ok": ok}


def outcome(row):
    """A table cell: what the attempts got."""
    _name, expected, _n, statuses, leaks = row
    codes = ", ".join(f"{code} ×{k}" for code, k in sorted(statuses.items()))
    if expected == "served":
        return f"served ({codes})"
    refused = set(statuses) <= {401, 403}
    return (f"refused ({codes}), no data" if refused and not leaks
            else f"**ANSWERED** ({codes}; {leaks} with data)")
