"""A form posted after the session lapsed is not lost: it is kept (signed, in a short-lived
cookie) and, after sign-in, shown again with what it will do, to be sent with one press or
discarded. It is never replayed unseen: the person confirms it with a fresh CSRF token.

Only forms posted from the console's own pages are kept (``Sec-Fetch-Site: same-origin`` or
an ``Origin`` of this host), so another site cannot plant an action to be offered.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from breachwatch.console.context import Caller, ConsoleContext, ctx_of, page_user
from breachwatch.console.security import PENDING_LIFETIME

router = APIRouter(include_in_schema=False)
Viewer = Annotated[Caller, page_user("viewer")]
MAX_FIELDS = 20
MAX_VALUE = 2000
MAX_TOTAL = 3000  # characters kept in all, so the cookie stays under the browsers' 4 KB
# The forms worth keeping, and how to say what each does.
KEPT: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/incidents/([^/]+)/actions/([a-z_]+)$"), "{1} incident {0}"),
    (re.compile(r"^/incidents/([^/]+)/breach$"), "confirm a breach on incident {0}"),
    (re.compile(r"^/incidents/([^/]+)/comments$"), "comment on incident {0}"),
    (re.compile(r"^/incidents/([^/]+)/assign$"), "assign incident {0}"),
    (re.compile(r"^/incidents/([^/]+)/silence$"), "silence pages like incident {0}"),
    (re.compile(r"^/incidents/([^/]+)/tasks/([^/]+)$"), "tick a task of incident {0}"),
    (re.compile(r"^/notices/([^/]+)/approve$"), "approve notice {0}"),
    (re.compile(r"^/silences$"), "add a silence"),
    (re.compile(r"^/incidents/bulk$"), "act on several incidents"),
)


def describe(path: str) -> str | None:
    for pattern, words in KEPT:
        m = pattern.match(path)
        if m:
            return words.format(*(g.replace("_", " ") for g in m.groups())).capitalize()
    return None


def _same_origin(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == request.url.netloc


def back_of(path: str) -> str:
    """The page a kept form was posted from (the incident, the silences), else the list."""
    back = re.sub(r"/(actions/[a-z_]+|breach|comments|assign|silence|tasks/[^/]+|approve)$", "", path)
    return back if back.startswith(("/incidents/", "/silences")) else "/incidents"


async def keep(request: Request, ctx: ConsoleContext) -> Any:
    """The response to a form posted without a session: sign in, then see the form again."""
    path = request.url.path
    target = back_of(path)
    if describe(path) is None or not _same_origin(request):
        return RedirectResponse(f"/signin?{urlencode({'next': target})}", status_code=303)
    try:
        form = await request.form()
    except Exception:  # an unreadable body is simply not kept
        return RedirectResponse(f"/signin?{urlencode({'next': target})}", status_code=303)
    fields: list[list[str]] = []
    total = 0
    for name, value in form.multi_items():
        if name == "csrf" or not isinstance(value, str) or len(fields) >= MAX_FIELDS:
            continue
        value = value[:MAX_VALUE]
        total += len(name) + len(value)
        if total > MAX_TOTAL:
            break
        fields.append([name[:64], value])
    response = RedirectResponse(f"/signin?{urlencode({'next': '/pending'})}", status_code=303)
    response.set_cookie(
        ctx.cookies.pending,
        ctx.signer.pending_cookie({"path": path, "fields": fields, "back": target}),
        max_age=int(PENDING_LIFETIME.total_seconds()),
        httponly=True,
        secure=ctx.secure,
        samesite="strict",
        path="/",
    )
    return response


@router.get("/pending", response_class=HTMLResponse)
def pending_page(request: Request, caller: Viewer) -> Any:
    ctx = ctx_of(request)
    kept = ctx.signer.pending(request.cookies.get(ctx.cookies.pending))
    path = str(kept.get("path", "")) if kept else ""
    what = describe(path)
    if kept is None or what is None:
        return RedirectResponse("/incidents", status_code=303)
    fields = [(str(n), str(v)) for n, v in kept.get("fields", []) if isinstance(n, str)]  # type: ignore[union-attr]
    response = ctx.page(
        request,
        "pending.html",
        caller,
        what=what,
        action=path,
        fields=fields,
        back=str(kept.get("back") or "/incidents"),
    )
    forget(response, ctx)  # the page now holds the form; it is offered once
    return response


@router.post("/pending/discard")
def discard(request: Request, caller: Viewer, csrf: Annotated[str, Form(max_length=200)] = "") -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    response = RedirectResponse("/incidents", status_code=303)
    forget(response, ctx)
    return ctx.flash(response, "The unsent form was discarded.")


def forget(response: Any, ctx: ConsoleContext) -> None:
    response.delete_cookie(ctx.cookies.pending, path="/", secure=ctx.secure, httponly=True, samesite="strict")
