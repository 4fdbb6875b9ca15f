"""GET /ui: the dashboard, a static page (service/static/ui) that uses the /v1 API from the browser."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse

from service.docs import STATIC_DIR


def mount_ui(app: FastAPI) -> None:
    """Add GET /ui (the dashboard page; its scripts and uPlot come from /static, mounted by mount_docs)."""

    @app.get("/ui", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "ui" / "index.html", media_type="text/html")

    @app.get("/ui/", include_in_schema=False)
    def dashboard_slash() -> RedirectResponse:
        return RedirectResponse("/ui")
