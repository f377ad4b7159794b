"""Who may read the dashboard (pure: no sockets).

Bound to a loopback address, anyone on this machine may, as with the node's own tools;
the ``Host`` header must then name a loopback host too, so that a web page elsewhere
cannot reach the dashboard through a DNS name re-bound to 127.0.0.1. Bound to any other
address, every request needs the cluster token: ``Authorization: Bearer <token>``, or
``?token=<token>`` once, which sets an HttpOnly cookie. The cookie holds a value derived
from the token (an HMAC), not the token: it opens the dashboard, not the cluster.
"""
import hashlib
import hmac
import ipaddress
from http.cookies import SimpleCookie
from typing import NamedTuple, Optional

COOKIE = "actorscoop_dashboard"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class Verdict(NamedTuple):
    status: int  # 200: go on; 401: no credentials; 403: wrong ones or a foreign Host
    reason: str = ""
    set_cookie: Optional[str] = None  # a Set-Cookie header value to send with the reply


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name, without port) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host part of a ``Host`` header (``name:port``, ``[v6]:port``, ``name``)."""
    header = header.strip()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"actorscoop-dashboard-cookie", hashlib.sha256).hexdigest()


class Guard:
    """Decides each request. ``token`` None: the dashboard is bound to loopback."""

    def __init__(self, bind_host: str, token: Optional[str]):
        if token is None and not is_loopback(bind_host):
            raise ValueError(f"a dashboard bound to {bind_host} needs the cluster token")
        self.token = token
        self._cookie = cookie_value(token) if token else None

    def check(self, headers, query_token: Optional[str]) -> Verdict:
        """``headers``: a mapping with ``get`` (case-insensitive, as http.server's);
        ``query_token``: the ``token`` query parameter, if any."""
        if self.token is None:
            host = host_of(headers.get("Host") or "")
            if host and not is_loopback(host):
                return Verdict(403, f"this dashboard serves localhost only, not Host {host!r}")
            return Verdict(200)
        auth = headers.get("Authorization") or ""
        if auth:
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not _same(given.strip(), self.token):
                return Verdict(403, "wrong token in the Authorization header")
            return Verdict(200)
        if query_token is not None:
            if not _same(query_token, self.token):
                return Verdict(403, "wrong token in ?token=")
            return Verdict(200, set_cookie=f"{COOKIE}={self._cookie}; HttpOnly; "
                                           "SameSite=Strict; Path=/")
        jar = SimpleCookie()
        try:
            jar.load(headers.get("Cookie") or "")
        except Exception:  # a malformed Cookie header is no credential
            jar = {}
        if COOKIE in jar:
            if _same(jar[COOKIE].value, self._cookie):
                return Verdict(200)
            return Verdict(403, "the dashboard cookie is not this cluster's (open the "
                                "page once with ?token=<cluster token>)")
        return Verdict(401, "this dashboard needs the cluster token: send "
                            "'Authorization: Bearer <token>', or open the page once with "
                            "?token=<token> (`actorscoop start --head` printed it)")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))
