"""HTTP routes of the Open Inference Protocol v2 under /v2; errors are ``{"error": "..."}`` (400, 404, 401, 413)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service import __version__
from service.bodies import read_body
from service.deps import OwnerDep
from service.errors import (NotAvailable, NotFound, ServiceError, TooLarge, TooManyRequests, Unauthorized, capped,
                            validation_detail)
from service.models.routes import INLINE_BYTES, loaded_model
from service.v2 import protocol

KEEP_STATUS = (NotFound, Unauthorized, TooLarge, TooManyRequests, NotAvailable)


def error_response(exc: ServiceError) -> JSONResponse:
    """The protocol's error body; bad requests of any kind are 400."""
    code = exc.status_code if isinstance(exc, KEEP_STATUS) else 400
    return JSONResponse({"error": capped(str(exc.detail))}, status_code=code, headers=exc.headers)


class V2Route(APIRoute):
    """Maps the service's errors (also those of dependencies, such as a missing key) to ``{"error": ...}``."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return error_response(exc)
            except RequestValidationError as exc:
                return JSONResponse({"error": capped(str(validation_detail(exc.errors())))}, status_code=400)

        return route_handler


router = APIRouter(prefix="/v2", tags=["open inference protocol v2"], route_class=V2Route)
_ERR = {"content": {"application/json": {"example": {"error": "model 5d41402abc4b2a76b9719d911017c592 not found"}}}}
_404 = {404: {"description": "Unknown model (for this caller).", **_ERR}}

INFER_EXAMPLE = {"id": "42", "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                          "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}],
                 "outputs": [{"name": "label"}, {"name": "probabilities"}]}
INFER_ANSWER = {"model_name": "5d41402abc4b2a76b9719d911017c592", "model_version": "1", "id": "42",
                "outputs": [{"name": "label", "datatype": "BYTES", "shape": [2], "data": ["setosa", "virginica"]},
                            {"name": "probabilities", "datatype": "FP32", "shape": [2, 3],
                             "data": [0.97, 0.02, 0.01, 0.0, 0.08, 0.92]}]}


@router.get("", responses={200: {"content": {"application/json": {"example": {
    "name": "mlp-service", "version": __version__, "extensions": ["binary_tensor_data"]}}}}})
def server_metadata(owner: OwnerDep) -> dict[str, Any]:
    """Server metadata: name, version, extensions."""
    return {"name": "mlp-service", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/health/live", responses={200: {"content": {"application/json": {"example": {"live": True}}}}})
def live() -> dict[str, bool]:
    """The server answers."""
    return {"live": True}


@router.get("/health/ready", responses={200: {"content": {"application/json": {"example": {"ready": True}}}},
                                        503: {"description": "The database is not reachable."}})
def ready(request: Request) -> JSONResponse:
    """The server can serve inference (its database answers)."""
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - reported as not ready
        return JSONResponse({"ready": False}, status_code=503)
    return JSONResponse({"ready": True})


async def _model(request: Request, owner: str, model_id: str, version: str | None):
    if version is not None and version != protocol.VERSION:
        raise NotFound(f"model {model_id} has no version {version!r} (its only version is {protocol.VERSION!r})")
    return await loaded_model(request, owner, model_id)


_META_EXAMPLE = {"name": "5d41402abc4b2a76b9719d911017c592", "versions": ["1"], "platform": protocol.PLATFORM,
                 "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
                 "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                             {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]}


@router.get("/models/{model_id}", responses={200: {"content": {"application/json": {"example": _META_EXAMPLE}}},
                                             **_404})
@router.get("/models/{model_id}/versions/{version}", include_in_schema=False)
async def model_metadata(model_id: str, request: Request, owner: OwnerDep, version: str | None = None) -> dict:
    """Model metadata: platform, versions, input and output tensors (-1 for the batch dimension)."""
    return protocol.metadata(await _model(request, owner, model_id, version))


@router.get("/models/{model_id}/ready", responses={
    200: {"content": {"application/json": {"example": {"name": "5d41402abc4b2a76b9719d911017c592", "ready": True}}}},
    **_404})
@router.get("/models/{model_id}/versions/{version}/ready", include_in_schema=False)
async def model_ready(model_id: str, request: Request, owner: OwnerDep, version: str | None = None) -> dict:
    """The model is loaded and can infer."""
    model = await _model(request, owner, model_id, version)
    return {"name": model.model_id, "ready": True}


@router.post("/models/{model_id}/infer", openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object"}, "example": INFER_EXAMPLE},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "description": (
        "Binary tensor extension: Inference-Header-Content-Length bytes of JSON header, then the tensors' "
        "bytes (row-major, little-endian) in input order.")}}}}},
    responses={200: {"content": {"application/json": {"example": INFER_ANSWER}}}, **_404,
               400: {"description": "Wrong input name, shape, datatype or data; the error names it.", **_ERR}})
@router.post("/models/{model_id}/versions/{version}/infer", include_in_schema=False)
async def infer(model_id: str, request: Request, owner: OwnerDep, version: str | None = None) -> Response:
    """Inference with JSON tensors (FP32, FP64, INT64, BYTES, ...; flat or nested) or binary tensors."""
    body = await read_body(request, max_bytes=request.app.state.settings.max_upload_bytes, what="body")
    model = await _model(request, owner, model_id, version)
    header_length = request.headers.get("inference-header-content-length")
    result = None if len(body) > INLINE_BYTES else protocol.infer(model, body, header_length, blocking=False)
    if result is None:              # big body, or the model is busy: off the event loop
        result = await run_in_threadpool(protocol.infer, model, body, header_length)
    content, headers = result
    media = headers.pop("content-type")
    return Response(content, media_type=media, headers=headers)
