"""Who is asking, and may they: signed session cookies, CSRF tokens, bearer API tokens,
sign-in throttling and security headers.

The session cookie holds only a random session id, signed with ``itsdangerous`` under the
console secret key; the session itself (user, CSRF token, expiry) is a database row, so
signing out or disabling a user ends it everywhere. A form post must carry the session's
CSRF token; the sign-in form, which comes before any session, carries a token bound to a
short-lived signed cookie of its own (double submit).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SESSION_LIFETIME = timedelta(hours=12)
SESSION_IDLE = timedelta(hours=2)
SIGNIN_FORM_LIFETIME = timedelta(minutes=30)

# Pages never need scripts; styles and images come from this origin (the chart is inline SVG
# drawn with attributes, which needs no 'unsafe-inline').
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# A notice preview is the notice's own HTML, shown sandboxed in a frame of the console.
PREVIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox"


def security_headers(*, preview: bool = False) -> dict[str, str]:
    return {
        "Content-Security-Policy": PREVIEW_CSP if preview else CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "SAMEORIGIN" if preview else "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


@dataclass(frozen=True, slots=True)
class CookieNames:
    session: str
    signin: str

    @classmethod
    def for_secure(cls, secure: bool) -> CookieNames:
        # "__Host-" makes the browser refuse the cookie unless it is Secure, host-only and Path=/.
        prefix = "__Host-" if secure else ""
        return cls(session=f"{prefix}bw_session", signin=f"{prefix}bw_signin")


class Signer:
    """Signs and checks the values the console keeps in cookies."""

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("the console secret key must have at least 16 characters")
        self._session = URLSafeTimedSerializer(secret_key, salt="breachwatch.console.session")
        self._signin = URLSafeTimedSerializer(secret_key, salt="breachwatch.console.signin")

    def session_cookie(self, session_id: str) -> str:
        return self._session.dumps(session_id)

    def session_id(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            value = self._session.loads(cookie, max_age=int(SESSION_LIFETIME.total_seconds()))
        except (BadSignature, SignatureExpired):
            return None
        return value if isinstance(value, str) else None

    def signin_token(self, cookie: str | None) -> tuple[str, str]:
        """The sign-in form token and the signed cookie that vouches for it: the one the
        browser already holds while it is valid (another tab or a stray request must not
        void a form on screen), else a fresh one."""
        if cookie:
            try:
                token = self._signin.loads(cookie, max_age=int(SIGNIN_FORM_LIFETIME.total_seconds()) // 2)
            except (BadSignature, SignatureExpired):
                token = None
            if isinstance(token, str):
                return token, cookie
        token = secrets.token_urlsafe(24)
        return token, self._signin.dumps(token)

    def signin_token_ok(self, cookie: str | None, form_token: str | None) -> bool:
        if not cookie or not form_token:
            return False
        try:
            expected = self._signin.loads(cookie, max_age=int(SIGNIN_FORM_LIFETIME.total_seconds()))
        except (BadSignature, SignatureExpired):
            return False
        return isinstance(expected, str) and hmac.compare_digest(expected, form_token)


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


class SigninThrottle:
    """Limits failed sign-ins per user name and per client address in a sliding window.

    A name under attack is locked for everyone for the window (the owner waits, nobody
    guesses), and one address cannot spray many names. Memory is bounded: the least
    recently used keys are forgotten first.
    """

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 20,
        window: timedelta = timedelta(minutes=15),
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.window = window.total_seconds()
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until another attempt is allowed, or None if it is allowed now."""
        now = self.clock()
        with self._lock:
            waits = []
            for key, limit in ((f"u:{username.lower()}", self.per_user), (f"a:{address}", self.per_address)):
                q = self._recent(key, now)
                if len(q) >= limit:
                    waits.append(q[0] + self.window - now)
            return max(1, int(max(waits)) + 1) if waits else None

    def failed(self, username: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (f"u:{username.lower()}", f"a:{address}"):
                q = self._failures.setdefault(key, deque())
                q.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"u:{username.lower()}", None)
