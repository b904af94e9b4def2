"""The pages' forms for people working incidents: assign or reassign, comment with
@mentions, tick the playbook's tasks, and act on many incidents of a list at once."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from breachwatch.console.context import Caller, ConsoleContext, ctx_of, may
from breachwatch.incidents import lifecycle, people
from breachwatch.incidents.lifecycle import TRANSITIONS, IncidentNotFound, LifecycleError
from breachwatch.runtime.app import lifecycle_hooks

router = APIRouter(include_in_schema=False)

Assigner = Annotated[Caller, may("assign")]
Commenter = Annotated[Caller, may("comment")]
TaskTicker = Annotated[Caller, may("tasks")]
BULK_ACTIONS = ("acknowledge", "resolve", "false_positive")
MAX_BULK = 200


def _back(ctx: ConsoleContext, incident_id: str, text: str, kind: str = "ok", anchor: str = "") -> Any:
    response = RedirectResponse(f"/incidents/{quote(incident_id, safe='')}{anchor}", status_code=303)
    return ctx.flash(response, text, kind)


@router.post("/incidents/{incident_id}/assign")
def assign(
    request: Request,
    incident_id: str,
    caller: Assigner,
    assignee: Annotated[str, Form(max_length=64)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    try:
        with ctx.session() as session, session.begin():
            row = people.assign(session, incident_id, assignee, caller.actor, reason)
            who = row.assignee if row else None
    except IncidentNotFound:
        return ctx.page(request, "error.html", caller, status=404, title="No such incident", message="")
    except LifecycleError as exc:
        return _back(ctx, incident_id, str(exc), "error", "#people")
    return _back(ctx, incident_id, f"Assigned to {who}." if who else "Nobody is assigned now.", anchor="#people")


@router.post("/incidents/{incident_id}/comments")
def add_comment(
    request: Request,
    incident_id: str,
    caller: Commenter,
    body: Annotated[str, Form(max_length=people.MAX_COMMENT + 100)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    try:
        with ctx.session() as session, session.begin():
            row = people.comment(session, incident_id, caller.actor, body)
            named = people.mentioned(session, row.body)
    except IncidentNotFound:
        return ctx.page(request, "error.html", caller, status=404, title="No such incident", message="")
    except LifecycleError as exc:
        return _back(ctx, incident_id, str(exc), "error", "#comments")
    text = "Comment added." + (f" Mentioned: {', '.join(named)}." if named else "")
    return _back(ctx, incident_id, text, anchor="#comments")


@router.post("/incidents/{incident_id}/tasks/{task_id}")
def tick_task(
    request: Request,
    incident_id: str,
    task_id: str,
    caller: TaskTicker,
    done: Annotated[str, Form(max_length=5)] = "1",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Any:
    ctx = ctx_of(request)
    ctx.check_csrf(caller, csrf)
    try:
        with ctx.session() as session, session.begin():
            task = people.set_task(session, incident_id, task_id, done == "1", caller.actor)
    except IncidentNotFound:
        return ctx.page(request, "error.html", caller, status=404, title="No such incident", message="")
    except LifecycleError as exc:
        return _back(ctx, incident_id, str(exc), "error", "#tasks")
    return _back(ctx, incident_id, f"{'Done' if task.done else 'Not done'}: {task.text[:120]}", anchor="#tasks")


@router.post("/incidents/bulk")
async def bulk(request: Request, caller: Annotated[Caller, may("acknowledge")]) -> Any:
    """One action on every ticked incident of a list; each is changed (and audited) on its
    own, and those whose status does not allow it are named."""
    ctx = ctx_of(request)
    form = await request.form()
    ctx.check_csrf(caller, str(form.get("csrf") or ""))
    action = str(form.get("action") or "")
    back = str(form.get("back") or "/incidents")
    back = back if back.startswith("/incidents") and not back.startswith("//") else "/incidents"
    response = RedirectResponse(back, status_code=303)
    ids = [str(v)[:64] for v in form.getlist("incident_id")][:MAX_BULK]
    if action not in BULK_ACTIONS or not caller.may(action):
        return ctx.flash(response, "Choose acknowledge, resolve or false positive.", "error")
    if not ids:
        return ctx.flash(response, "Tick the incidents to act on first.", "error")
    reason = str(form.get("reason") or "")[:2000]
    done, refused = [], []
    for incident_id in ids:
        try:
            with ctx.session() as session, session.begin():
                lifecycle.transition(
                    session, incident_id, action, caller.actor, reason, on_change=lifecycle_hooks(ctx.settings)
                )
                if action == "acknowledge":
                    people.take_if_unassigned(session, incident_id, caller.principal.username, caller.actor)
            done.append(incident_id)
        except (IncidentNotFound, LifecycleError) as exc:
            refused.append(f"{incident_id}: {exc}")
    verb = TRANSITIONS[action][0].replace("_", " ")
    if refused:
        text = f"{len(done)} {verb}; {len(refused)} not changed: " + "; ".join(refused[:5])
        return ctx.flash(response, text[:600], "error")
    return ctx.flash(response, f"{len(done)} incident{'s' if len(done) != 1 else ''} {verb}.")
