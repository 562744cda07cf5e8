"""The ASGI application. Every route group registers here, in ``ROUTE_GROUPS``, and nowhere else."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .. import __version__
from . import admin, health, metrics, odoo, pull, reconcile, webhooks

if TYPE_CHECKING:
    from ..runtime import Runtime

#: (module with ``router``) in the order they are mounted. Webhook and pull routes join here.
ROUTE_GROUPS = [health, metrics, admin, reconcile, webhooks, odoo, pull]


def create_app(runtime: "Runtime", manage_lifecycle: bool = True) -> FastAPI:
    """``manage_lifecycle``: start the workers with the app and stop them (within the configured
    deadline) when the server shuts down, e.g. on SIGTERM."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if manage_lifecycle:
            runtime.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                runtime.stop()

    app = FastAPI(title="erp-bridge", version=__version__, lifespan=lifespan)
    app.state.runtime = runtime
    for group in ROUTE_GROUPS:
        app.include_router(group.router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    return app


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 with the field and the reason; never echoes the body (it may hold personal data)."""
    problems = [{"field": ".".join(str(p) for p in err["loc"]), "error": err["msg"]} for err in exc.errors()]
    return JSONResponse({"error": "invalid request", "problems": problems}, status_code=400)
