"""What every request handler of the console needs: settings, the database, the cookie
signer, the password hasher, the sign-in throttle, templates, who is asking and what their
role lets them do (``ROLE_FOR``: the one place the console's role checks are decided)."""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.responses import Response

from breachwatch.console import words
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

# What each thing a person does in the console needs, as the README's console section states
# it. Pages and API endpoints ask here (``Caller.may``), so the policy is read in one place.
ROLE_FOR: dict[str, str] = {
    "view": "viewer",
    "comment": "viewer",
    "acknowledge": "responder",
    "investigate": "responder",
    "contain": "responder",
    "resolve": "responder",
    "false_positive": "responder",
    "reopen": "responder",
    "assign": "responder",
    "tasks": "responder",
    "merge": "responder",
    "split": "responder",
    "silence": "responder",
    "confirm_breach": "responder",
    "preview_notice": "responder",
    "approve_notice": "approver",
    # The breach register and the decisions that change a breach's duties.
    "write_register": "responder",
    "export_register": "responder",
    "record_contacts": "responder",
    "record_moment": "approver",
    "assess_harm": "approver",
    "record_delay": "approver",
    "decide_safe_harbour": "approver",
    "audit": "admin",
    # Staff access (``console.access_requests``): staff or the ticketing system file a request for
    # access to a tenant that requires approval; ending an approval early is the tenant's (its own
    # token) or an approver's, at the tenant's request.
    "file_access_request": "responder",
    "revoke_access_approval": "approver",
}
# The roles in order, each with what it adds, for the help page and the README.
ROLES: tuple[tuple[str, str], ...] = (
    ("viewer", "reads incidents, entities and silences, and comments"),
    (
        "responder",
        "also takes and assigns incidents, changes their status, confirms a breach, silences pages, "
        "writes and exports the breach register",
    ),
    (
        "approver",
        "also approves customer notices and decides on a breach's duties (moments, risk assessments, "
        "law-enforcement delays, safe harbour)",
    ),
    ("admin", "also reads the audit log and manages users"),
)


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

    def may(self, what: str) -> bool:
        """Whether the caller's role allows ``what`` (a key of ``ROLE_FOR``)."""
        return self.principal.can(ROLE_FOR[what])


class SignInRequired(Exception):
    """A page was asked for without a live session: the browser goes to the sign-in page."""


class Forbidden(Exception):
    """The caller's role does not allow this page or action."""

    def __init__(self, role: str) -> None:
        super().__init__(role)
        self.role = role


def build_templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Every value a page shows passes here: event text cannot reorder the page's own text.
        finalize=words.neutralise,
    )
    env.filters["dt"] = words.absolute
    env.filters["iso"] = words.absolute
    env.filters["ago"] = words.when
    env.filters["words"] = words.words
    env.filters["num"] = words.num
    env.filters["country"] = words.country
    env.filters["percent"] = words.percent
    env.globals["ROLE_FOR"] = ROLE_FOR
    env.globals["ROLES"] = ROLES
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
        self.trusted_proxies = [ipaddress.ip_network(p, strict=False) for p in settings.console_trusted_proxies]

    def client_address(self, request: Request) -> str:
        """The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
        address in X-Forwarded-For that is not one of them (the header is ignored otherwise)."""
        peer = request.client.host if request.client else "unknown"
        hops = [peer]
        if self._trusted(peer):
            forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
            hops = [peer, *reversed([h.strip() for h in forwarded.split(",") if h.strip()])]
        for hop in hops:
            if not self._trusted(hop):
                return hop[:64]
        return hops[-1][:64]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)

    def flash(self, response: Response, text: str, kind: str = "ok") -> Response:
        """Show ``text`` once on the next page (``ok`` or ``error``), after a redirect."""
        response.set_cookie(
            self.cookies.flash,
            self.signer.flash_cookie(kind, text),
            max_age=300,
            httponly=True,
            secure=self.secure,
            samesite="strict",
            path="/",
        )
        return response

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
        flash = self.signer.flash(request.cookies.get(self.cookies.flash))
        context = {
            "user": caller.principal if caller else None,
            "caller": caller,
            "csrf": caller.csrf if caller else None,
            "path": request.url.path,
            "flash": flash,
            **values,
        }
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        if flash is not None:
            response.delete_cookie(self.cookies.flash, path="/", secure=self.secure, httponly=True, samesite="strict")
        return response


def ctx_of(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.ctx
    return ctx


def _signed_in(request: Request) -> Caller:
    caller = ctx_of(request).caller(request)
    if caller is None:
        raise SignInRequired()
    return caller


def page_user(role: str = "viewer") -> Any:
    """A dependency of a page: the signed-in caller, who must hold at least ``role``."""

    def dependency(request: Request) -> Caller:
        caller = _signed_in(request)
        if not caller.can(role):
            raise Forbidden(role)
        return caller

    return Depends(dependency)


def may(what: str) -> Any:
    """A dependency of a page that does ``what``: the caller, whose role must allow it."""
    return page_user(ROLE_FOR[what])
