"""Admin API: status and dead letters, behind the bearer token from the settings."""
from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request

router = APIRouter(prefix="/admin", tags=["admin"])
#: queue ids are SQLite/PostgreSQL BIGINTs: anything larger names no entry (and must not reach the
#: database driver, which overflows)
MAX_ID = 2 ** 63 - 1
EntryId = Path(ge=1, le=MAX_ID, description="queue entry id")


def require_admin(request: Request) -> None:
    token = request.app.state.runtime.settings.admin_token
    if token is None:
        raise HTTPException(503, "the admin API is disabled: set admin_token "
                                 "(ERP_BRIDGE_ADMIN_TOKEN or the admin_token credential)")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def entry_json(entry, redact=None) -> dict[str, Any]:
    """``redact``: masks secret values in stored errors (rows written before redaction existed)."""
    data = asdict(entry)
    if redact is not None:
        data["last_error"] = redact(data.get("last_error"))
    for key in ("available_at", "created_at", "updated_at", "lease_until"):
        if data.get(key) is not None:
            data[key] = data[key].isoformat()
    if data.get("quantity") is not None:
        data["quantity"] = str(data["quantity"])
    data["state"] = str(entry.state)
    return data


@router.get("/status", dependencies=[Depends(require_admin)])
def status(request: Request) -> dict:
    runtime = request.app.state.runtime
    return {"targets": [
        {"target": s.target, "depth": {str(k): v for k, v in s.depth.items()},
         "oldest_pending_age_s": s.oldest_pending_age_s} for s in runtime.queue.stats()],
        "workers_alive": runtime.workers_alive()}


@router.get("/dead-letters", dependencies=[Depends(require_admin)])
def dead_letters(request: Request, target: str | None = None,
                 limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict:
    runtime = request.app.state.runtime
    entries = runtime.queue.dead_letters(target=target, limit=limit, offset=offset)
    return {"entries": [entry_json(e, runtime.redact) for e in entries]}


@router.get("/entries/{entry_id}", dependencies=[Depends(require_admin)])
def show_entry(request: Request, entry_id: int = EntryId) -> dict:
    runtime = request.app.state.runtime
    entry = runtime.queue.get(entry_id)
    if entry is None:
        raise HTTPException(404, f"no queue entry {entry_id}")
    attempts = [{**asdict(a), "outcome": str(a.outcome), "started_at": a.started_at.isoformat(),
                 "error": runtime.redact(a.error)} for a in runtime.queue.attempts(entry_id)]
    return {"entry": entry_json(entry, runtime.redact), "attempts": attempts}


@router.post("/dead-letters/{entry_id}/replay", dependencies=[Depends(require_admin)])
def replay(request: Request, entry_id: int = EntryId) -> dict:
    runtime = request.app.state.runtime
    try:
        entry = runtime.queue.replay(entry_id)
    except KeyError:
        raise HTTPException(404, f"no queue entry {entry_id}") from None
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"entry": entry_json(entry, runtime.redact)}


@router.post("/dead-letters/{entry_id}/discard", dependencies=[Depends(require_admin)])
def discard(request: Request, entry_id: int = EntryId,
            reason: str = Body(..., embed=True, min_length=1, max_length=2000,
                               description="why this sale or change is resolved without delivering it")) -> dict:
    """Resolve a dead letter without delivering it. A discarded sale stops counting against
    availability; the reason is recorded with the entry and its attempts."""
    runtime = request.app.state.runtime
    try:
        entry = runtime.queue.discard(entry_id, reason, who="admin-api")
    except KeyError:
        raise HTTPException(404, f"no queue entry {entry_id}") from None
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"entry": entry_json(entry, runtime.redact)}
