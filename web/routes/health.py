"""Liveness and readiness of the database, the object store and the executor."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from common.capabilities import import_errors, registered
from web.deps import State
from web.schemas import Check, HealthPublic

router = APIRouter(tags=["health"])


def _database(state: State) -> Check:
    try:
        with state.runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return Check(ok=True, detail={"dialect": state.runtime.engine.dialect.name})
    except Exception as error:
        return Check(ok=False, detail={"error": f"{type(error).__name__}: {error}"})


def _objects(state: State) -> Check:
    try:
        state.runtime.objects.ping()
        return Check(ok=True, detail={"kind": state.runtime.objects.kind})
    except Exception as error:
        return Check(ok=False, detail={"error": f"{type(error).__name__}: {error}"})


def _capabilities() -> Check:
    failed = import_errors()
    return Check(ok=not failed, detail={"loaded": len(registered()), "failed": failed})


def _executor(state: State) -> Check:
    detail = state.executor.health()
    return Check(ok=bool(detail.pop("ok", False)), detail=detail)


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "a dependency is down"}},
)
async def read_health(state: State) -> JSONResponse:
    """Liveness (this answers) plus readiness of database, object store, executor and
    capability modules."""
    checks = {
        "database": await run_in_threadpool(_database, state),
        "objects": await run_in_threadpool(_objects, state),
        "executor": _executor(state),
        "capabilities": _capabilities(),
    }
    healthy = all(check.ok for check in checks.values())
    body = HealthPublic(
        status="ok" if healthy else "degraded", version=version("aperture"), checks=checks
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if healthy else 503)
