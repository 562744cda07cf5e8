"""The ASGI application. Every route group registers here, in ``ROUTE_GROUPS``, and nowhere else."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from .. import __version__
from . import admin, health, metrics, odoo, pull, reconcile, webhooks
from .guard import InputGuard

if TYPE_CHECKING:
    from ..runtime import Runtime

#: (module with ``router``) in the order they are mounted, which is the order a request's path is
#: matched in: the busiest first (webhooks, pull checks), so they skip the admin routes (issue 15)
ROUTE_GROUPS = [webhooks, pull, health, odoo, metrics, admin, reconcile]


def create_app(runtime: Runtime, manage_lifecycle: bool = True) -> FastAPI:
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
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]  # Starlette's stub wants Exception
    http = runtime.settings.http
    app.add_middleware(InputGuard, max_body_bytes=http.max_body_bytes, route_body_bytes=http.route_body_bytes,
                       body_timeout_s=http.body_timeout_s, max_concurrent_requests=http.max_concurrent_requests,
                       max_header_bytes=http.max_header_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]  # FastAPI's documented override
    return app


def _openapi(app: FastAPI) -> dict:
    """The document says what the routes answer: a request that does not validate is a 400 with
    the field and the reason (``_validation_error``), never FastAPI's default 422."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = PROBLEM_SCHEMA
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None or "400" in responses:
                responses["400"] = {"description": "invalid request: which field, and why", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            responses.setdefault("413", {"description": "request body over this route's limit"})
    app.openapi_schema = doc
    return doc


PROBLEM_SCHEMA = {"type": "object", "properties": {
    "error": {"type": "string"},
    "problems": {"type": "array", "items": {"type": "object", "properties": {
        "field": {"type": "string"}, "error": {"type": "string"}}}}}}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 with the field and the reason; never echoes the body (it may hold personal data)."""
    problems = [{"field": ".".join(str(p) for p in err["loc"]), "error": err["msg"]} for err in exc.errors()]
    return JSONResponse({"error": "invalid request", "problems": problems}, status_code=400)
