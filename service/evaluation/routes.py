"""HTTP route POST /v1/models/{id}/evaluate: metrics and permutation importance of a model on labelled rows."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from service.bodies import read_body
from service.deps import OwnerDep
from service.evaluation import service
from service.models import formats
from service.models import service as models
from service.models.routes import loaded_model

router = APIRouter(prefix="/v1/models", tags=["models"])

_ERRORS = {404: {"description": "No model (or data set) with this id (for this caller)."}}
EVALUATE_OPENAPI = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "description": "dataset_id, or inline rows as predict takes them (inputs, records, "
                                                "or columns + data) with targets (labels as uploaded, or values); "
                                                "importance (bool), n_repeats (1-20, default 5), seed (default 0)."},
    "examples": {"dataset": {"value": {"dataset_id": "9b1f0e2d3c4b5a69788796a5b4c3d2e1", "importance": True}},
                 "inline": {"value": {"inputs": [[5.1, 3.5, 1.4, 0.2]], "targets": ["setosa"]}}}}}}}
EVALUATE_ANSWER = {"application/json": {"example": {
    "model_id": "5d41402abc4b2a76b9719d911017c592", "task": "classification", "rows": 2,
    "metrics": {"loss": 0.11, "log_loss": 0.11, "accuracy": 1.0, "brier_score": 0.02, "roc_auc": 1.0, "pr_auc": 1.0},
    "confusion_matrix": {"labels": ["no", "yes"], "matrix": [[1, 0], [0, 1]]},
    "per_class": [{"label": "no", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
                  {"label": "yes", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}],
    "importance": {"metric": "accuracy", "baseline": 1.0, "rows": 2, "n_repeats": 5, "seed": 0,
                   "columns": [{"column": "age", "mean": 0.3, "std": 0.1}]}}}}


@router.post("/{model_id}/evaluate", openapi_extra=EVALUATE_OPENAPI, responses={
    200: {"description": "The figures (see README: evaluate).", "content": EVALUATE_ANSWER}, **_ERRORS,
    413: {"description": "Body larger than MLP_MAX_UPLOAD_BYTES."},
    415: {"description": "A Content-Type that is not JSON (form encoding, multipart, CSV, ...)."},
    422: {"description": "Neither or both of dataset_id and inline rows, targets missing or of the wrong length, "
                         "an unknown label, a data set of another task."}})
async def evaluate(model_id: str, request: Request, owner: OwnerDep) -> Response:
    """Metrics of the model on labelled rows (`dataset_id`, or predict's shapes with `targets`); `importance: true`
    adds permutation feature importance."""
    formats.check_json(request.headers.get("content-type"), what="evaluate")
    body = await read_body(request, max_bytes=request.app.state.settings.max_upload_bytes, what="body")
    req = service.parse(body)
    model = await loaded_model(request, owner, model_id)
    answer = await run_in_threadpool(_evaluate, request.app, owner, model, req)
    return Response(orjson.dumps(answer), media_type="application/json")


def _evaluate(app: FastAPI, owner: str, model: models.LoadedModel, req: dict) -> dict:
    if req["dataset_id"] is not None:
        with app.state.sessionmaker() as session:
            X, y = service.dataset_data(session, app.state.storage, model, owner=owner, dataset_id=req["dataset_id"])
    else:
        X, y = service.inline_data(model, req)
    return service.evaluate(model, X, y, req)
