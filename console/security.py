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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SESSION_LIFETIME = timedelta(hours=12)
SESSION_IDLE = timedelta(hours=2)
SIGNIN_FORM_LIFETIME = timedelta(minutes=30)
PENDING_LIFETIME = timedelta(minutes=30)

# Styles, images and the one script (live refresh, shortcuts) come from this origin only; no
# inline script or style anywhere (the charts are inline SVG drawn with attributes), so nothing
# an event carries can run. The script fetches pages of this origin (connect-src).
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
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
    flash: str
    pending: str

    @classmethod
    def for_secure(cls, secure: bool) -> CookieNames:
        # "__Host-" makes the browser refuse the cookie unless it is Secure, host-only and Path=/.
        prefix = "__Host-" if secure else ""
        return cls(
            session=f"{prefix}bw_session",
            signin=f"{prefix}bw_signin",
            flash=f"{prefix}bw_flash",
            pending=f"{prefix}bw_pending",
        )


class Signer:
    """Signs and checks the values the console keeps in cookies."""

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("the console secret key must have at least 16 characters")
        self._session = URLSafeTimedSerializer(secret_key, salt="breachwatch.console.session")
        self._signin = URLSafeTimedSerializer(secret_key, salt="breachwatch.console.signin")
        self._flash = URLSafeTimedSerializer(secret_key, salt="breachwatch.console.flash")
        self._pending = URLSafeTimedSerializer(secret_key, salt="breachwatch.console.pending")

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

    def flash_cookie(self, kind: str, text: str) -> str:
        """A message for the next page (signed: only the console can put text in the alert box)."""
        return self._flash.dumps([kind, text[:600]])

    def flash(self, cookie: str | None) -> tuple[str, str] | None:
        if not cookie:
            return None
        try:
            value = self._flash.loads(cookie, max_age=300)
        except (BadSignature, SignatureExpired):
            return None
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
            return value[0], value[1]
        return None

    def pending_cookie(self, action: dict[str, object]) -> str:
        return self._pending.dumps(action)

    def pending(self, cookie: str | None) -> dict[str, object] | None:
        """A form posted after the session lapsed, kept to be offered again after sign-in."""
        if not cookie:
            return None
        try:
            value = self._pending.loads(cookie, max_age=int(PENDING_LIFETIME.total_seconds()))
        except (BadSignature, SignatureExpired):
            return None
        return value if isinstance(value, dict) else None


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


@dataclass(slots=True)
class _Key:
    """Attempts counted under one key (a user name, an address, or both) in the current window."""

    attempts: int = 0
    first: float = 0.0
    blocked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    """How one key is throttled: ``free`` attempts in a window, then a delay that doubles with
    each further attempt, from ``base`` seconds up to ``cap``."""

    free: int
    base: float
    cap: float

    def delay(self, attempts: int) -> float:
        over = attempts - self.free
        if over < 0:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(over, 30))


class SigninThrottle:
    """Slows down password guessing without locking anybody out for long.

    An attempt is counted *before* the password is checked (``reserve``), under three keys:
    the user name, the address, and the pair. Past a few free attempts each key makes the next
    attempt wait, the wait doubling per attempt: the pair up to 15 minutes (one address guessing
    one account), the name and the address up to ``cap_user`` and ``cap_address`` (a minute by
    default), so a flood of failures against the person on call, or from behind a shared proxy,
    costs them a short wait rather than the window. A success clears the user's counts.
    Memory is bounded: the least recently used keys are forgotten first. One process keeps
    its own counts (the console runs as one process).
    """

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 20,
        per_pair: int = 3,
        cap_user: float = 60.0,
        cap_address: float = 60.0,
        cap_pair: float = 900.0,
        window: timedelta = timedelta(minutes=15),
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.rules = {
            "u": Rule(per_user, 1.0, cap_user),
            "a": Rule(per_address, 1.0, cap_address),
            "p": Rule(per_pair, 2.0, cap_pair),
        }
        self.window = window.total_seconds()
        self.clock = clock
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Key] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _names(username: str, address: str) -> tuple[tuple[str, str], ...]:
        user = username.lower()
        return (("u", f"u:{user}"), ("a", f"a:{address}"), ("p", f"p:{user}|{address}"))

    def _get(self, name: str, now: float) -> _Key:
        key = self._keys.get(name)
        if key is None or now - key.first > self.window:
            key = _Key(first=now)
            self._keys[name] = key
        self._keys.move_to_end(name)
        return key

    def reserve(self, username: str, address: str) -> int | None:
        """Count an attempt now, before the password is checked. None: go ahead; else the
        seconds to wait (nothing is counted then, so waiting never makes it worse)."""
        now = self.clock()
        with self._lock:
            keys = [(rule, self._get(name, now)) for rule, name in self._names(username, address)]
            wait = max(k.blocked_until - now for _, k in keys)
            if wait > 0:
                return max(1, int(wait + 0.999))
            for rule, key in keys:
                key.attempts += 1
                key.blocked_until = now + self.rules[rule].delay(key.attempts)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            return None

    def succeeded(self, username: str, address: str) -> None:
        """The password was right: the user's own counts start again."""
        with self._lock:
            for rule, name in self._names(username, address):
                if rule != "a":
                    self._keys.pop(name, None)
                elif (key := self._keys.get(name)) is not None:
                    # A sign-in that worked is not a guess: it does not slow the others down.
                    key.attempts = max(0, key.attempts - 1)
                    if self.rules[rule].delay(key.attempts) == 0:
                        key.blocked_until = 0.0
