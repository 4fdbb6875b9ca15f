"""/docs (Swagger UI) and /redoc served from assets vendored in the package, so they work without internet."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"


VALIDATION_EXAMPLE = {"detail": [{"type": "greater_than_equal", "loc": ["query", "limit"],
                                   "msg": "Input should be greater than or equal to 1", "input": "0"}]}
_VALIDATION_FIELDS = {"loc": "Where the value is: the part of the request, then the field path.",
                      "msg": "What is wrong, in words.", "type": "pydantic's error type.",
                      "input": "The value that was refused.", "ctx": "Details of the rule that failed."}


def complete_openapi(schema: dict) -> dict:
    """Document FastAPI's own validation-error schema (descriptions, an example); /v2 answers 400 instead."""
    comps = schema.get("components", {}).get("schemas", {})
    if "HTTPValidationError" in comps:
        comps["HTTPValidationError"]["properties"]["detail"]["description"] = "One entry per refused value."
        comps["HTTPValidationError"]["examples"] = [VALIDATION_EXAMPLE]
    for name, desc in _VALIDATION_FIELDS.items():
        prop = comps.get("ValidationError", {}).get("properties", {}).get(name)
        if prop is not None:
            prop["description"] = desc
    for path, ops in schema.get("paths", {}).items():
        if path.startswith("/v2"):
            for op in ops.values():
                op.get("responses", {}).pop("422", None)
    return schema


def mount_docs(app: FastAPI) -> None:
    """Add /docs, /docs/oauth2-redirect, /redoc and /static (create the app with docs_url=redoc_url=None)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            complete_openapi(build())
        return app.openapi_schema

    app.openapi = openapi
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
