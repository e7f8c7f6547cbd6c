"""Who may see the dashboard and act through it: the token, CSRF, and where it may listen.

* **The token** (``--token``, ``create_app(token=...)``): every request must carry it, as
  ``Authorization: Bearer TOKEN`` or in the cookie set when the dashboard is opened once
  with ``?token=TOKEN``. Compared in constant time.
* **CSRF**: each browser gets a random session cookie (``HttpOnly``, ``SameSite=Strict``);
  every POST must carry the HMAC of that session under the app's secret (a hidden form
  field, or the ``X-CSRF-Token`` header htmx sends), and an ``Origin``, when the browser
  sends one, must be the dashboard's own.
* **Where it listens**: anything but loopback needs a token (:func:`check_bind`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from starlette.requests import Request

from durable.errors import ConfigError

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "TOKEN_COOKIE",
    "Guard",
    "check_bind",
    "is_loopback",
]

TOKEN_COOKIE = "durable_dashboard_token"
SESSION_COOKIE = "durable_dashboard_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


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

    def token_given(self, request: Request) -> str | None:
        """The token the request carries (header, else cookie), if any."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return request.cookies.get(TOKEN_COOKIE)

    def token_ok(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    @staticmethod
    def new_session() -> str:
        return secrets.token_urlsafe(32)

    def csrf_for(self, session: str) -> str:
        """The CSRF token of a browser session."""
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, request: Request, given: str | None) -> bool:
        """Whether a POST carries its session's CSRF token and comes from this origin."""
        session = request.cookies.get(SESSION_COOKIE)
        if not session or not given:
            return False
        if not hmac.compare_digest(given.encode(), self.csrf_for(session).encode()):
            return False
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            return origin == own
        return origin is None
