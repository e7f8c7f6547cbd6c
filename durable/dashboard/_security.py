"""Who may see the dashboard and act through it: the token, CSRF, and where it may listen.

* **The token** (``--token``, ``create_app(token=...)``): every request must carry it, as
  ``Authorization: Bearer TOKEN`` or in the cookie set when the dashboard is opened once
  with ``?token=TOKEN``. Compared in constant time.
* **CSRF**: each browser gets a random session cookie (``HttpOnly``, ``SameSite=Lax``);
  every POST it sends must carry the HMAC of that session under the app's secret (a hidden
  form field, or the ``X-CSRF-Token`` header htmx sends), and an ``Origin``, when the
  browser sends one, must name the host (and port) the request was sent to. A request
  that authenticates with the token in its ``Authorization`` header is not a browser's
  forged one (a page elsewhere cannot make a browser add that header), so it needs no
  CSRF token: scripts act with the token alone.
* **Cookie names**: browsers keep cookies by host, not by port, so two dashboards on one
  host (ports 8765 and 8766) would overwrite each other's cookies. Each cookie name ends
  with a short hash of the port and the path the dashboard is served under
  (``cookie_suffix``).
* **Where it listens**: anything but loopback needs a token (``check_bind``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

from durable.errors import ConfigError

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "TOKEN_COOKIE",
    "Guard",
    "check_bind",
    "cookie_suffix",
    "is_loopback",
    "same_origin",
]

TOKEN_COOKIE = "durable_dashboard_token"  # (each name ends with _<cookie_suffix>)
SESSION_COOKIE = "durable_dashboard_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """ConfigError when the dashboard would listen beyond loopback without a token."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"durable dashboard --host {host} without --token would let anyone who can reach "
            "that address read every execution and act on it; give --token (or set "
            "DURABLE_DASHBOARD_TOKEN), or listen on 127.0.0.1 and reach it through an SSH "
            "tunnel or your own authenticating proxy"
        )


def _host_and_port(netloc: str) -> tuple[str, int | None] | None:
    """``("name", port)`` of a Host header's value (port None when it names none); None
    when it is not one."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port


def cookie_suffix(request: Request) -> str:
    """What ends this dashboard's cookie names: a hash of the port the request was sent
    to (from its Host header, as the browser addressed it) and the path the dashboard is
    served under (``root_path``), so dashboards on one host do not share cookies."""
    where = _host_and_port(request.headers.get("host", ""))
    port = "" if where is None or where[1] is None else str(where[1])
    root = request.scope.get("root_path", "") or ""
    return hashlib.sha256(f"{port}\x00{root}".encode()).hexdigest()[:10]


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (when it has one) names the host it was sent to.

    Host names must be equal; ports too when the Host header names one (an Origin without
    a port has its scheme's). Schemes are not compared: behind a proxy that ends TLS the
    browser's Origin is ``https://`` while the request reaches the app over ``http``.
    """
    origin = request.headers.get("origin")
    if origin is None:  # (not a browser, or one that sends none for same-origin posts)
        return True
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    if not parts.hostname:  # ("null": a sandboxed frame, a file, a redirect elsewhere)
        return False
    own = _host_and_port(request.headers.get("host", ""))
    if own is None or parts.hostname.lower() != own[0]:
        return False
    if own[1] is None:  # (a Host without a port: the default one of http or https)
        return origin_port in (80, 443)
    return own[1] == origin_port


class Guard:
    """The checks of one app: its token (None: none needed) and its CSRF secret."""

    def __init__(self, token: str | None, secret: bytes | None = None) -> None:
        if token is not None and len(token) < 16:
            raise ConfigError(
                f"the dashboard token is {len(token)} characters long: use at least 16 "
                "random characters (python -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        self.token = token
        self._secret = secret or secrets.token_bytes(32)

    @staticmethod
    def token_cookie(request: Request) -> str:
        """The name of the cookie that carries the token, for this dashboard."""
        return f"{TOKEN_COOKIE}_{cookie_suffix(request)}"

    @staticmethod
    def session_cookie(request: Request) -> str:
        """The name of the session cookie, for this dashboard."""
        return f"{SESSION_COOKIE}_{cookie_suffix(request)}"

    @staticmethod
    def bearer(request: Request) -> str | None:
        """The token of the request's ``Authorization: Bearer`` header, if any."""
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return None

    def token_given(self, request: Request) -> str | None:
        """The token the request carries (header, else cookie), if any."""
        given = self.bearer(request)
        return given if given is not None else request.cookies.get(self.token_cookie(request))

    def token_ok(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def by_bearer(self, request: Request) -> bool:
        """Whether the request authenticates with the token in its Authorization header
        (a script's, never a browser's forged request): it needs no CSRF token."""
        given = self.bearer(request)
        return self.token is not None and given is not None and self.token_ok(given)

    @staticmethod
    def new_session() -> str:
        return secrets.token_urlsafe(32)

    def csrf_for(self, session: str) -> str:
        """The CSRF token of a browser session."""
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, request: Request, given: str | None) -> bool:
        """Whether a POST carries its session's CSRF token and comes from this origin."""
        session = request.cookies.get(self.session_cookie(request))
        if not session or not given:
            return False
        if not hmac.compare_digest(given.encode(), self.csrf_for(session).encode()):
            return False
        return same_origin(request)
