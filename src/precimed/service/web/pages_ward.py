"""The ward pages: which wards have patients, one ward's early-warning board updating live, and acknowledging an
alert.

GET  /wards                                  wards with patients (counts, open and unacknowledged alerts)
GET  /wards/{ward}                           the board, most urgent first (audited "page:ward")
GET  /wards/{ward}/events                    server-sent events: `board` (the table's rows, rendered and escaped
                                             here) after every change, a heartbeat comment every ~15 s; ends when
                                             the browser goes, the session ends or the token is revoked
POST /wards/{ward}/alerts/{alert_id}/ack     acknowledge an open alert (CSRF; audited "alert_ack")

Every route needs the `vitals` permission (clinicians), like POST /v1/vitals. The board is the process's
(precimed.workflows.wards, fed by POST /v1/vitals): with several service workers each has its own, so serve the
ward pages from one worker or with sticky sessions (docs/web.md). Acknowledgements are kept with the board in
memory; the audit trail keeps them durably. Audit details name the ward and the alert id, never a patient.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from markupsafe import Markup
from sqlalchemy import bindparam, select
from starlette.concurrency import run_in_threadpool

from precimed.errors import ConfigError
from precimed.service.container import Container
from precimed.service.db import TokenRow
from precimed.service.routes.deps import ContainerDep
from precimed.service.routes.vitals import ward_board
from precimed.service.web import session as sessions
from precimed.service.web.session import PageError, WebUser, csrf_protect, page_user
from precimed.service.web.templating import environment, render
from precimed.workflows.wards import SubscriberDropped

router = APIRouter()

#: seconds between heartbeat comments of a live stream (and between its checks of the session)
HEARTBEAT_SECONDS = 15.0
WARD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?")
ALERT_ID = re.compile(r"al_[0-9a-f]{12}")
ACK_MESSAGES = {
    "acknowledged": "Alert acknowledged.",
    "already": "That alert had already been acknowledged: nothing changed.",
}
_LABEL = select(TokenRow.label).where(TokenRow.id == bindparam("id"))
LEVEL_CLASS = {"low": "ok", "low-medium": "warn", "medium": "warn", "high": "bad"}


def _ward(ward: str) -> str:
    if not WARD.fullmatch(ward):
        raise PageError(404, "no such ward: a ward name is 1 to 64 letters, digits, spaces, '.', '_' or '-'",
                        title="Ward not found")
    return ward


def sparkline(trend: list[int], width: int = 96, height: int = 24) -> dict[str, Any]:
    """The points of an inline-SVG sparkline of NEWS2 totals (0 at the bottom, 20 the chart's maximum at the top)
    and its text alternative."""
    top = max(20, *trend) if trend else 20
    n = len(trend)
    step = width / max(n - 1, 1)
    ys = [height - 2 - (v / top) * (height - 4) for v in trend]
    points = " ".join(f"{i * step:.1f},{y:.1f}" for i, y in enumerate(ys))
    return {"points": points, "width": width, "height": height, "single": n == 1, "y": f"{ys[-1]:.1f}" if ys else "0",
            "text": "NEWS2 trend, oldest first: " + ", ".join(str(v) for v in trend)}


def _rows_context(rows: list[dict[str, Any]], ward: str, csrf_token: str) -> dict[str, Any]:
    for row in rows:
        row["spark"] = sparkline(row["trend"])
        row["level_class"] = LEVEL_CLASS.get(row["level"], "")
    return {"rows": rows, "ward": ward, "ward_url": quote(ward, safe=""), "csrf_token": csrf_token}


def render_rows(rows: list[dict[str, Any]], ward: str, csrf_token: str) -> str:
    """The board's table rows as HTML, for the page and for each live update: rendered by the autoescaping
    environment, so a patient id, bed or reason holding markup comes out as text."""
    return environment().get_template("ward_rows.html.j2").render(_rows_context(rows, ward, csrf_token))


@router.get("/wards", response_class=Response)
async def wards(request: Request, container: ContainerDep,
                user: Annotated[WebUser, Depends(page_user("vitals"))]) -> Response:
    """The wards with patients on this server process's board (names and counts only: no patient)."""
    return render(request, "ward_list.html.j2", {"wards": ward_board(container).board.wards(), "quote": quote})


@router.get("/wards/{ward}", response_class=Response)
def ward_page(request: Request, ward: str, container: ContainerDep,
              user: Annotated[WebUser, Depends(page_user("vitals"))], ack: str | None = None) -> Response:
    """One ward's board, most urgent first; audited like an API read of patients ("page:ward")."""
    ward = _ward(ward)
    rows = ward_board(container).board.ward(ward)
    container.commit(user.principal, "page:ward", detail={"ward": ward, "patients": len(rows)})
    message = ACK_MESSAGES.get(ack or "")
    return render(request, "ward_board.html.j2", {
        "ward": ward, "ward_url": quote(ward, safe=""), "rows_html": Markup(render_rows(rows, ward, user.csrf_token)),
        "count": len(rows), "message": message})


def _sse(event: str, data: str) -> str:
    """One server-sent event; every line of `data` gets its own `data:` field (the browser joins them with \\n)."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


async def _still_signed_in(request: Request, container: Container) -> bool:
    request.state.web_user_checked = False  # look again: sign-out, expiry and revocation end the stream
    return await sessions.current_user(request, container) is not None


@router.get("/wards/{ward}/events")
async def ward_events(request: Request, ward: str, container: ContainerDep,
                      user: Annotated[WebUser, Depends(page_user("vitals"))]) -> Response:
    """Live updates of one ward's board as server-sent events (audited once, when the stream opens)."""
    ward = _ward(ward)
    wards = ward_board(container)
    try:
        sub = wards.hub.subscribe(ward)
    except ConfigError as exc:
        raise PageError(503, str(exc), title="Too many live pages") from None
    try:
        await run_in_threadpool(container.commit, user.principal, "page:ward_events", detail={"ward": ward})
    except BaseException:
        wards.hub.unsubscribe(sub)
        raise

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 5000\n\n"
            yield _sse("board", render_rows(wards.board.ward(ward), ward, user.csrf_token))
            while True:
                try:
                    changed = await sub.next(HEARTBEAT_SECONDS)
                except SubscriberDropped:
                    return  # fell behind: the browser reconnects and gets the whole board again
                if not await _still_signed_in(request, container):
                    yield _sse("signedout", "your session ended")
                    return
                if changed is None:
                    yield ": heartbeat\n\n"
                    continue
                while not sub.queue.empty():  # coalesce a burst: the rows sent are the board as it is now
                    sub.queue.get_nowait()
                yield _sse("board", render_rows(wards.board.ward(ward), ward, user.csrf_token))
        except asyncio.CancelledError:
            raise
        finally:
            wards.hub.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/wards/{ward}/alerts/{alert_id}/ack", response_class=Response, dependencies=[Depends(csrf_protect)])
def acknowledge(request: Request, ward: str, alert_id: str, container: ContainerDep,
                user: Annotated[WebUser, Depends(page_user("vitals"))]) -> Response:
    """Acknowledge an open alert (audited "alert_ack" with the ward and alert id); a second one changes nothing."""
    ward = _ward(ward)
    if not ALERT_ID.fullmatch(alert_id):
        raise PageError(404, "no such alert on this ward", title="Alert not found")
    row = container.db.fetch_one(_LABEL, {"id": user.token_id})
    label = str(row[0]) if row and row[0] else None
    result = ward_board(container).acknowledge(ward, alert_id, actor=user.token_id, role=user.role, label=label)
    if result.status == "not_found":
        container.commit(user.principal, "alert_ack", outcome="not_found", status=404,
                         detail={"ward": ward, "alert_id": alert_id})
        raise PageError(404, "no such open alert on this ward (it may have cleared, escalated or the patient "
                             "left the ward): reload the board", title="Alert not found")
    container.commit(user.principal, "alert_ack", detail={"ward": ward, "alert_id": alert_id,
                                                          "result": result.status})
    return RedirectResponse(f"/wards/{quote(ward, safe='')}?ack={result.status}", status_code=303)
