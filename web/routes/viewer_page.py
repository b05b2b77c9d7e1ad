"""The viewer page and its sign-in page (public: they hold no data; the data routes the
viewer calls need an identity, which the session cookie gives the browser)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parents[1] / "static"
VIEWER_HTML = STATIC / "viewer.html"
LOGIN_HTML = STATIC / "login.html"

router = APIRouter(prefix="/viewer", tags=["viewer"])
#: `/viewer/...` outside the API prefix: a redirect to the page under it.
alias_router = APIRouter(prefix="/viewer", include_in_schema=False)

HTML_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {}}}}


def _page(html: Path = VIEWER_HTML) -> FileResponse:
    return FileResponse(html, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("", response_class=FileResponse, responses=HTML_RESPONSES)
def read_viewer_list() -> FileResponse:
    """The viewer's list of the signed-in user's slides."""
    return _page()


@router.get("/login", response_class=FileResponse, responses=HTML_RESPONSES)
def read_viewer_login() -> FileResponse:
    """Sign in for a cookie session (local accounts); `?next=` is the page to return to."""
    return _page(LOGIN_HTML)


@router.get("/{slide_id:uuid}", response_class=FileResponse, responses=HTML_RESPONSES)
def read_viewer(slide_id: uuid.UUID) -> FileResponse:
    """The viewer page of one slide (OpenSeadragon on the Deep Zoom routes)."""
    return _page()


@alias_router.get("")
def redirect_viewer_list() -> RedirectResponse:
    return RedirectResponse("/api/v1/viewer", status_code=307)


@alias_router.get("/{slide_id:uuid}")
def redirect_viewer(slide_id: uuid.UUID) -> RedirectResponse:
    return RedirectResponse(f"/api/v1/viewer/{slide_id}", status_code=307)
