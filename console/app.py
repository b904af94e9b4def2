"""The on-call web console and JSON API: ``create_app(settings, engine)`` builds the
FastAPI application; ``breachwatch console`` serves it with uvicorn."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from breachwatch.channels import sendgrid_events
from breachwatch.console import (
    access_requests,
    api,
    breach,
    breach_api,
    entity_views,
    health,
    live,
    pending,
    people_views,
    risk,
    transparency,
    views,
    webhooks,
)
from breachwatch.console.context import STATIC_DIR, ConsoleContext, Forbidden, SignInRequired, ctx_of
from breachwatch.console.security import SigninThrottle, security_headers
from breachwatch.core.settings import Settings

API_DESCRIPTION = (
    "Incidents, their lifecycle, silences, customer notices, tenants' transparency logs, access requests "
    "and the audit trail of BreachWatch. "
    "Authenticate with `Authorization: Bearer <token>` (`breachwatch tokens create USER`); every "
    "call made with a token is recorded in the audit trail."
)


def _is_api(request: Request) -> bool:
    return request.url.path == "/api" or request.url.path.startswith("/api/")


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    password_hasher: PasswordHasher | None = None,
    throttle: SigninThrottle | None = None,
) -> FastAPI:
    """The console application over ``engine`` (already migrated)."""
    app = FastAPI(
        title="BreachWatch console API",
        version="1",
        description=API_DESCRIPTION,
        # The schema is served behind authentication below; no interactive docs page, since
        # it would need third-party JavaScript.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ConsoleContext(settings, engine, password_hasher=password_hasher, throttle=throttle)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(health.router)  # before the others: no sign-in, no session
    # The register's API first: its paths under /api/incidents/{id}/ would otherwise be taken
    # for lifecycle actions by the API's /api/incidents/{id}/{action}.
    app.include_router(breach_api.router)
    app.include_router(api.router)
    app.include_router(webhooks.router)
    app.include_router(live.router)
    app.include_router(people_views.router)
    app.include_router(entity_views.router)
    app.include_router(pending.router)
    app.include_router(views.router)
    app.include_router(breach.router)
    # SendGrid's signed event webhook: delivery receipts, which also settle sends whose answer
    # was lost (the outbox asks them before the provider's look-up). 503 until a key is set.
    app.state.engine = engine
    app.state.settings = settings
    app.state.sendgrid_webhook_public_key = settings.sendgrid_webhook_public_key
    app.include_router(sendgrid_events.router)
    app.include_router(risk.router)
    app.include_router(transparency.router)
    app.include_router(access_requests.router)
    access_requests.redact_links_in_access_log()

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(caller: api.Viewer) -> dict[str, Any]:
        schema = app.openapi()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a BreachWatch API token"}
        }
        schema["security"] = [{"bearer": []}]
        return schema

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if "content-security-policy" not in response.headers:
            for name, value in security_headers().items():
                response.headers.setdefault(name, value)
        if request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        if request.method == "POST":
            # The session lapsed while a form was open: keep it, to offer it again after sign-in.
            response: Response = await pending.keep(request, ctx_of(request))
            return response
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        ctx = ctx_of(request)
        return ctx.page(
            request,
            "error.html",
            ctx.caller(request),
            status=403,
            title="Not allowed",
            message=f"This needs the {exc.role} role. Ask an administrator if you need it.",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        ctx = ctx_of(request)
        caller = ctx.caller(request)
        if caller is None and exc.status_code == 404:
            # Unknown pages look the same as known ones to a stranger: sign in first.
            return RedirectResponse("/signin", status_code=303)
        if exc.status_code == 405 and request.method == "GET" and pending.describe(request.url.path):
            # The address of a form's action, opened as a page (a bookmark, a sign-in's "next").
            return RedirectResponse(pending.back_of(request.url.path), status_code=303)
        title = {403: "Not allowed", 404: "Not found", 405: "Not allowed"}.get(exc.status_code, "Something went wrong")
        return ctx.page(request, "error.html", caller, status=exc.status_code, title=title, message=str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if _is_api(request):
            errors = [{"loc": e.get("loc"), "msg": e.get("msg")} for e in exc.errors()]
            return JSONResponse({"detail": errors}, status_code=422)
        ctx = ctx_of(request)
        caller = ctx.caller(request)
        if caller is None:
            return RedirectResponse("/signin", status_code=303)
        return ctx.page(
            request,
            "error.html",
            caller,
            status=422,
            title="That form was not filled in right",
            message="Go back and check the values.",
        )

    return app
