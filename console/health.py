"""/healthz and /readyz of the console: unauthenticated, for load balancers and orchestrators,
and saying nothing but alive, ready, or why not (in fixed words)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from breachwatch.console.context import ctx_of
from breachwatch.storage.db import reachable

router = APIRouter(include_in_schema=False)

DB_UNREACHABLE = "database unreachable"


@router.get("/healthz")
def alive() -> JSONResponse:
    """The process answers: nothing to restart."""
    return JSONResponse({"status": "alive"})


@router.get("/readyz")
def ready(request: Request) -> JSONResponse:
    """The console can serve pages: its database answers."""
    if reachable(ctx_of(request).engine):
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready", "reasons": [DB_UNREACHABLE]}, status_code=503)
