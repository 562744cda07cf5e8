"""Odoo's post-commit nudge: poll the outbox now instead of at the next interval.

The nudge carries no data (the outbox is read back over RPC), so a lost nudge costs at most one
poll interval. It is still authenticated: the bearer must be the secret named by the Odoo
mapping's ``webhooks.secret`` (the module's "shared secret" setting).
"""
from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["odoo"])


@router.post("/odoo/nudge")
async def nudge(request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    if not runtime.pollers:
        return JSONResponse({"error": "no active Odoo system of record to nudge"}, status_code=404)
    given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
    nudged = [name for name in runtime.pollers if _allowed(runtime, name, given)]
    if not nudged:
        return JSONResponse({"error": "missing or wrong bearer token (the module's shared secret must equal "
                                      "the secret named by webhooks.secret in the Odoo mapping)"}, status_code=401)
    for name in nudged:
        runtime.pollers[name].nudge()
    return JSONResponse({"nudged": nudged}, status_code=202)


def _allowed(runtime, system: str, given: bytes) -> bool:
    webhooks = getattr(runtime.mappings.systems[system], "webhooks", None)
    if webhooks is None or not webhooks.secret:
        return False
    expected = runtime.settings.secret(webhooks.secret).get_secret_value().encode()
    return hmac.compare_digest(given, expected)
