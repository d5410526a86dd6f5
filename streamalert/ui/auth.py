"""Login for the web UI: the API token, typed once into a form, becomes a signed session cookie.

- The cookie holds `<issued seconds>.<nonce>.<HMAC(token, issued.nonce)>`, never the token: it is `HttpOnly`
  (scripts cannot read it), `SameSite=Strict` (no other site's page sends it) and `Secure` over HTTPS. Every
  replica checks it without shared state; changing the token ends every session; it lasts `SESSION_S`.
- Each session has a CSRF token, HMAC(token, "csrf" + nonce), put in every form and checked on every POST.
  The login form itself is protected by a double-submit token (a random cookie repeated in the form).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from streamalert.clock import Clock

SESSION_COOKIE = "streamalert_session"
LOGIN_COOKIE = "streamalert_login"
SESSION_S = 12 * 3600


def _sign(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


class Sessions:
    def __init__(self, token: str | None, clock: Clock) -> None:
        self.token = token or None  # an empty token lets nobody in
        self.clock = clock

    @staticmethod
    def random() -> str:
        return secrets.token_urlsafe(24)

    @staticmethod
    def same(a: str, b: str) -> bool:
        return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))

    def token_matches(self, given: str) -> bool:
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token.encode())

    def new_session(self) -> str:
        if self.token is None:
            raise ValueError("no token configured")
        body = f"{self.clock.now_ms() // 1000}.{secrets.token_urlsafe(16)}"
        return f"{body}.{_sign(self.token, body)}"

    def nonce(self, request: web.Request) -> str | None:
        """The session's nonce when the request carries a valid, unexpired session cookie; else None."""
        if self.token is None:
            return None
        issued, _, rest = request.cookies.get(SESSION_COOKIE, "").partition(".")
        nonce, _, signature = rest.partition(".")
        if not (issued.isdigit() and nonce and signature):
            return None
        if not hmac.compare_digest(signature.encode(), _sign(self.token, f"{issued}.{nonce}").encode()):
            return None
        if not 0 <= self.clock.now_ms() // 1000 - int(issued) < SESSION_S:
            return None
        return nonce

    def csrf(self, nonce: str) -> str:
        if self.token is None:
            raise ValueError("no token configured")
        return _sign(self.token, f"csrf.{nonce}")[:32]

    def csrf_ok(self, nonce: str, given: str) -> bool:
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.csrf(nonce).encode())


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
