"""The FastAPI app factory: routers under /api/v1, problem details, middleware, lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from common.executors import Executor, make_executor
from common.identity import Identity
from common.jobs.service import JobService
from common.records import migrate
from common.runtime import Runtime
from common.settings import Settings
from web.auth import PrincipalCache
from web.cached_tiles import CachedTiles
from web.deps import current_principal
from web.errors import install_error_handlers
from web.hub import EventHub
from web.middleware import RequestContextMiddleware
from web.openapi import install_openapi
from web.periodic import cleanup_forever
from web.routes import (
    analysis,
    auth,
    builds,
    datasets,
    events,
    files,
    functions,
    health,
    inference,
    inference_webhook,
    jobs,
    predictions,
    processing,
    signed,
    slides,
    users,
    viewer,
    viewer_page,
    ws,
)
from web.slides import SlideService
from web.state import AppState

log = logging.getLogger("aperture.web")

API_PREFIX = "/api/v1"


#: Routers open to anyone: health, signed URLs (they carry their own signature and
#: expiry), and auth (whose register/login/refresh are how an identity is obtained; its
#: other routes ask for the principal themselves), and the viewer page (its data
#: routes need an identity; the browser's session cookie gives it), and the inference
#: webhook (external services sign each callback; the signature is their identity).
PUBLIC_ROUTERS = (health, signed, auth, viewer_page, inference_webhook)
#: Everything else needs an identity: a router added here is protected by default.
#: Routes are matched in order: the viewer's tiles, asked for dozens a second, go first.
PROTECTED_ROUTERS = (
    viewer,
    users,
    events,
    functions,
    files,
    jobs,
    analysis,
    datasets,
    builds,
    processing,
    slides,
    predictions,
    inference,
)


def _api_router() -> APIRouter:
    api = APIRouter(prefix=API_PREFIX)
    for module in PUBLIC_ROUTERS:
        api.include_router(module.router)
    for module in PROTECTED_ROUTERS:
        api.include_router(module.router, dependencies=[Depends(current_principal)])
    api.include_router(ws.router)  # authenticates inside: WebSockets answer with close codes
    return api


def create_app(
    settings: Settings | None = None,
    *,
    migrate_on_start: bool | None = None,
    executor: Callable[[Runtime], Executor] | None = None,
    housekeeping: bool = True,
) -> FastAPI:
    """Build the app. The database is migrated on start for the embedded SQLite default
    (production runs `aperture migrate` as a deploy step instead).

    On its own (tests, Modal's web function) the app runs everything in its process: the
    configured executor and the periodic cleanup. The web processes of `aperture serve`
    pass `executor` (a link to the serve process's supervisor) and `housekeeping=False`,
    since the serve process migrates, supervises and cleans up once for all of them.
    """
    settings = settings or Settings()
    if migrate_on_start is None:
        migrate_on_start = settings.database_url is None
    build_executor = executor or make_executor

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await run_in_threadpool(Runtime.from_settings, settings)
        if migrate_on_start:
            await run_in_threadpool(migrate, runtime.engine)
        executor = build_executor(runtime)
        await run_in_threadpool(executor.start)
        hub = EventHub(runtime.queries)
        await hub.start()
        slide_service = SlideService(runtime)
        app.state.principals = PrincipalCache(settings.principal_cache_s)
        app.state.principals.watch(runtime.db)
        app.state.aperture = AppState(
            settings=settings,
            runtime=runtime,
            executor=executor,
            jobs=JobService(runtime, executor),
            hub=hub,
            identity=Identity.from_runtime(runtime),
            slides=slide_service,
        )
        log.info(
            "aperture started", extra={"executor": executor.name, "objects": runtime.objects.kind}
        )
        cleanup = (
            asyncio.create_task(cleanup_forever(runtime, settings.cleanup_interval_s))
            if housekeeping and settings.cleanup_interval_s > 0
            else None
        )
        try:
            yield
        finally:
            if cleanup is not None:
                cleanup.cancel()
            await hub.stop()
            await run_in_threadpool(executor.stop)
            slide_service.close()
            runtime.close()

    # FastAPIOffline serves the Swagger UI and ReDoc assets itself (no CDN), so /docs
    # works on lab machines without internet access.
    app = FastAPIOffline(
        title="Aperture",
        version="0.1.0",
        lifespan=lifespan,
        description="Microscopy and digital-pathology image analysis, run as jobs: uploads, "
        "metadata, per-FOV processing workflows and merge, kinetic trace fitting, "
        "whole-slide images as Deep Zoom tiles with a viewer, and inference over whole "
        "slides (the builtin nuclei-he detector, your ONNX models, external services "
        "reporting through signed webhooks) with predictions queried per viewport.",
        # Authorize once (bearer token or API key) and keep it across page reloads.
        swagger_ui_parameters={"persistAuthorization": True},
    )
    install_error_handlers(app)
    app.add_middleware(CachedTiles)  # innermost: CORS and request context wrap it too
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "ETag", "Location", "X-Aperture-Task-Id"],
        )
    app.add_middleware(RequestContextMiddleware)
    app.include_router(_api_router())
    app.include_router(viewer_page.alias_router)
    # Public viewer assets: the page's script, styles and OpenSeadragon.
    app.mount("/static", StaticFiles(directory=viewer_page.STATIC), name="static")
    install_openapi(app)
    return app
