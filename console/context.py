"""What every request handler of the console needs: settings, the database, the cookie
signer, the password hasher, the sign-in throttle, templates, and who is asking."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi import HTTPException, Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.console.security import SESSION_IDLE, CookieNames, Signer, SigninThrottle, csrf_ok
from breachwatch.core.settings import Settings
from breachwatch.incidents import users
from breachwatch.incidents.users import Principal
from breachwatch.storage import audit

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class Caller:
    """A signed-in user or a token holder, with the CSRF token of their session (if any)."""

    principal: Principal
    csrf: str | None  # None for bearer tokens (no ambient credential, so no CSRF to fear)

    @property
    def actor(self) -> str:
        return self.principal.actor

    @property
    def username(self) -> str:
        """The user acting (a token acts as its user): who approves, by name."""
        return self.principal.username

    def can(self, role: str) -> bool:
        return self.principal.can(role)


class SignInRequired(Exception):
    """A page was asked for without a live session: the browser goes to the sign-in page."""


class Forbidden(Exception):
    """The caller's role does not allow this page or action."""

    def __init__(self, role: str) -> None:
        super().__init__(role)
        self.role = role


def _datetime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "" if value is None else value.strftime(fmt) + " UTC"


def _iso(value: Any) -> str:
    """An ISO 8601 time from another module's dict, shown like every other time."""
    if isinstance(value, datetime):
        return _datetime(value)
    try:
        return _datetime(datetime.fromisoformat(str(value)).astimezone(UTC))
    except ValueError:
        return "" if value is None else str(value)


def _words(value: str | None) -> str:
    return (value or "").replace("_", " ")


def build_templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["dt"] = _datetime
    env.filters["words"] = _words
    env.filters["iso"] = _iso
    env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) else v
    return Jinja2Templates(env=env)


class ConsoleContext:
    """Built once by ``create_app`` and kept in ``app.state.ctx``."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        password_hasher: PasswordHasher | None = None,
        throttle: SigninThrottle | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        secret = settings.secret("console_secret_key")
        if not secret:
            # Sessions then last only as long as this process; fine for a first look, not for production.
            log.warning("BREACHWATCH_CONSOLE_SECRET_KEY is not set: using a random key, sessions end on restart")
            secret = secrets.token_urlsafe(32)
        self.signer = Signer(secret)
        self.secure = settings.console_secure_cookies
        self.cookies = CookieNames.for_secure(self.secure)
        self.hasher = password_hasher or users.default_hasher()
        self.throttle = throttle or SigninThrottle()
        self.templates = build_templates()

    def session(self) -> Session:
        """A database session whose objects stay readable after commit (pages render after it)."""
        return Session(self.engine, expire_on_commit=False)

    # --- who is asking ---------------------------------------------------------------------

    def caller(self, request: Request) -> Caller | None:
        """The caller of a request by bearer token or session cookie, or None (token uses are audited)."""
        header = request.headers.get("authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            with Session(self.engine) as session, session.begin():
                principal = users.authenticate_token(session, token.strip())
                if principal is None:
                    return None
                audit.serialize_writes(session)
                audit.record(
                    session,
                    principal.actor,
                    "token.use",
                    f"token:{principal.via[6:]}",
                    {"method": request.method, "path": request.url.path},
                )
            return Caller(principal, None)
        sid = self.signer.session_id(request.cookies.get(self.cookies.session))
        if sid is None:
            return None
        with Session(self.engine) as session, session.begin():
            found = users.resolve_session(session, sid, idle=SESSION_IDLE)
            if found is None:
                return None
            principal, row = found
            return Caller(principal, row.csrf_token)

    def check_csrf(self, caller: Caller, given: str | None) -> None:
        """Reject a state change from a session that does not carry the session's CSRF token."""
        if caller.csrf is not None and not csrf_ok(caller.csrf, given):
            raise HTTPException(status_code=403, detail="missing or wrong CSRF token; reload the page and try again")

    def page(self, request: Request, name: str, caller: Caller | None, status: int = 200, **values: Any) -> Any:
        """Render a template with the values every page uses."""
        context = {
            "user": caller.principal if caller else None,
            "csrf": caller.csrf if caller else None,
            "path": request.url.path,
            **values,
        }
        return self.templates.TemplateResponse(request, name, context, status_code=status)


def ctx_of(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.ctx
    return ctx
