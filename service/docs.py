"""/docs (Swagger UI) and /redoc served from assets vendored in the package, so they work without internet."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"


def mount_docs(app: FastAPI) -> None:
    """Add /docs, /docs/oauth2-redirect, /redoc and /static (create the app with docs_url=redoc_url=None)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{STATIC_URL}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/swagger-ui/favicon-32x32.png")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{title} - ReDoc",
                              redoc_js_url=f"{STATIC_URL}/redoc/redoc.standalone.js",
                              redoc_favicon_url=f"{STATIC_URL}/swagger-ui/favicon-32x32.png",
                              with_google_fonts=False)
