"""The last reconciliation report (docs/reconciliation.md), behind the admin token."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request

from ..sync.reconcile import last_report
from .admin import require_admin

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/reconciliation", dependencies=[Depends(require_admin)])
def reconciliation(request: Request) -> dict:
    report = last_report(request.app.state.runtime.settings.data_dir)
    if report is None:
        raise HTTPException(404, "no reconciliation has run yet: run `erp-bridge reconcile` or wait for the schedule")
    return report
