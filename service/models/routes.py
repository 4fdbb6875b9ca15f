"""HTTP routes of /v1/models: read, list, delete, predict (evaluate is in service/evaluation/routes.py)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, FastAPI, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from service.bodies import read_body
from service.deps import OwnerDep, PageDep, SessionDep, StorageDep
from service.models import export, formats, service
from service.models import invocations as invocations_
from service.models.schemas import (INVOCATIONS_OPENAPI, PREDICT_BINARY_ANSWERS, PREDICT_OPENAPI, InvocationsResponse,
                                    ModelList, ModelRead, PredictResponse)

router = APIRouter(prefix="/v1/models", tags=["models"])

_ERRORS = {404: {"description": "No model with this id (for this caller)."}}
INLINE_BYTES = 64 * 1024          # smaller predict bodies are parsed on the event loop (no thread hop)
INLINE_WORK = 2_000_000           # and predicted there when rows x parameters is at most this (about 1 ms)


@router.get("", response_model=ModelList)
def list_models(session: SessionDep, owner: OwnerDep, page: PageDep, job_id: str | None = None) -> ModelList:
    """List trained models, newest first (optionally those of one job)."""
    rows, total = service.list_(session, owner=owner, limit=page.limit, offset=page.offset, job_id=job_id)
    return ModelList(items=[ModelRead.model_validate(r) for r in rows], total=total)


@router.get("/{model_id}", response_model=ModelRead, responses=_ERRORS)
def get_model(model_id: str, request: Request, session: SessionDep, owner: OwnerDep,
              storage: StorageDep) -> ModelRead:
    """Read one model: task, classes, input_dim, input_schema (columns and preprocessing), final metrics."""
    return ModelRead.model_validate(service.read(session, storage, owner=owner, model_id=model_id,
                                                 cache=request.app.state.model_cache))


@router.delete("/{model_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
def delete_model(model_id: str, request: Request, session: SessionDep, owner: OwnerDep,
                 storage: StorageDep) -> Response:
    """Delete a model and its weights."""
    service.delete(session, owner=owner, storage=storage, model_id=model_id, cache=request.app.state.model_cache)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{model_id}/predict", response_model=PredictResponse, openapi_extra=PREDICT_OPENAPI,
             responses={200: {"content": PREDICT_BINARY_ANSWERS}, **_ERRORS,
                        406: {"description": "Accept names no format predict answers in."},
                        413: {"description": "Body larger than MLP_MAX_UPLOAD_BYTES (or an Arrow/Parquet body "
                                             "that decodes to more)."},
                        415: {"description": "A Content-Type predict does not read (the detail lists those it "
                                             "does), or a Content-Encoding."},
                        422: {"description": "Rows of the wrong width (the detail names the expected width), "
                                             "ragged rows, non-finite values, empty inputs."}})
async def predict(model_id: str, request: Request, owner: OwnerDep) -> Response:
    """Predict labels (as uploaded) and class probabilities, or regression values, for rows of raw features."""
    kind = formats.body_kind(request.headers.get("content-type"))
    formats.check_encoding(request.headers.get("content-encoding"))
    answer_kind = formats.answer_kind(request.headers.get("accept"))
    max_bytes = request.app.state.settings.max_upload_bytes
    body = await read_body(request, max_bytes=max_bytes, what="body")
    model = await loaded_model(request, owner, model_id)
    if kind != "json" or answer_kind != "json":     # .npy / Arrow / Parquet / CSV in, or .npy / Arrow out
        charset = formats.charset_of(request.headers.get("content-type"))
        out = None if len(body) > INLINE_BYTES else formats.predict(model, body, kind, answer_kind, blocking=False,
                                                                      max_work=INLINE_WORK, max_bytes=max_bytes,
                                                                      charset=charset)
        if out is None:
            out = await run_in_threadpool(partial(formats.predict, max_bytes=max_bytes, charset=charset),
                                          model, body, kind, answer_kind)
        return Response(out[0], media_type=out[1])
    if len(body) > INLINE_BYTES:
        answer = await run_in_threadpool(service.predict_body, model, body)
    else:                            # small bodies: parse on the event loop; predict there if the work is small
        X = service.parse_inputs(body, input_dim=model.input_dim, columns=model.columns, drop=model.dropped)
        answer = service.try_predict(model, X) if model.cost(X.shape[0]) <= INLINE_WORK else None
        if answer is None:
            answer = await run_in_threadpool(service.predict, model, X)
    return Response(answer, media_type="application/json")


async def loaded_model(request: Request, owner: str, model_id: str) -> service.LoadedModel:
    """The caller's model from this process's cache (loaded off the event loop on a miss); 404 if unknown."""
    cache: service.ModelCache = request.app.state.model_cache
    model = cache.get(owner, model_id)
    if model is None:
        model = await run_in_threadpool(_load, request.app, request.app.state.storage, owner, model_id, cache)
    elif model.needs_check():        # bounded staleness when another API process deleted the model
        await run_in_threadpool(_revalidate, request.app, owner, model_id, cache)
    return model


@router.post("/{model_id}/invocations", response_model=InvocationsResponse, openapi_extra=INVOCATIONS_OPENAPI,
             responses={**_ERRORS, 413: {"description": "Body larger than MLP_MAX_UPLOAD_BYTES."},
                        415: {"description": "Neither JSON nor text/csv, or a Content-Encoding."},
                        422: {"description": "Not one of the MLflow payloads, a missing column, rows of the "
                                             "wrong width, non-finite values."}})
async def invocations(model_id: str, request: Request, owner: OwnerDep) -> Response:
    """MLflow-style scoring (`dataframe_split`, `dataframe_records`, `instances`, `inputs`, or text/csv)."""
    invocations_.media_kind(request.headers.get("content-type"))
    formats.check_encoding(request.headers.get("content-encoding"))
    body = await read_body(request, max_bytes=request.app.state.settings.max_upload_bytes, what="body")
    model = await loaded_model(request, owner, model_id)
    answer = await run_in_threadpool(invocations_.invoke, model, body, request.headers.get("content-type"))
    return Response(answer, media_type="application/json")


def _load(app: FastAPI, storage, owner: str, model_id: str, cache: service.ModelCache) -> service.LoadedModel:
    with app.state.sessionmaker() as session:
        return service.load(session, storage, owner=owner, model_id=model_id, cache=cache)


def _revalidate(app: FastAPI, owner: str, model_id: str, cache: service.ModelCache) -> None:
    with app.state.sessionmaker() as session:
        service.revalidate(session, owner=owner, model_id=model_id, cache=cache)


_EXPORT_RESPONSES = {
    200: {"content": {"application/octet-stream": {"schema": {
        "type": "string", "format": "binary", "description": "An ONNX ModelProto, or a .npz of the engine."}}},
          "description": "The model file (Content-Disposition names it `{id}.onnx` or `{id}.npz`)."},
    **_ERRORS,
    422: {"description": "format is not onnx or npz."},
    501: {"description": "format=onnx on a server installed without the `onnx` extra."},
}


@router.get("/{model_id}/export", response_class=Response, responses=_EXPORT_RESPONSES)
def export_model(model_id: str, session: SessionDep, owner: OwnerDep, storage: StorageDep,
                 format: str = Query("onnx", description="`onnx` (an ONNX graph with the preprocessing, "
                                                         "probabilities and labels) or `npz` (the engine's file, "
                                                         "read by `core.Network.load`).")) -> Response:
    """The model in a standard format: ONNX, or the engine's own .npz."""
    data = export.export(session, storage, owner=owner, model_id=model_id, fmt=format)
    return Response(data, media_type=export.MEDIA_TYPES[format],
                    headers={"Content-Disposition": f'attachment; filename="{model_id}.{format}"'})


@router.get("/{model_id}/download", response_class=Response, responses={200: _EXPORT_RESPONSES[200], **_ERRORS})
def download_model(model_id: str, session: SessionDep, owner: OwnerDep, storage: StorageDep) -> Response:
    """The engine's .npz file of the model (what `core.Network.load` reads)."""
    data = export.read_npz(session, storage, owner=owner, model_id=model_id)
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{model_id}.npz"'})
