"""HTTP routes of /v1/datasets: thin wrappers over service functions."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from service.datasets import service, upload
from service.datasets.schemas import UPLOAD_OPENAPI, DatasetList, DatasetRead
from service.deps import OwnerDep, PageDep, SessionDep, SettingsDep, StorageDep
router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_ERRORS = {404: {"description": "No data set with this id (for this caller)."}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetRead, openapi_extra=UPLOAD_OPENAPI,
             responses={413: {"description": "Larger than MLP_MAX_UPLOAD_BYTES, or over the tenant's data set "
                                             "quota (nothing is stored)."},
                        415: {"description": "Not a .csv/.npz file, or neither multipart nor JSON."},
                        422: {"description": "Invalid data: the detail names the line/row and column."}})
async def create_dataset(request: Request, session: SessionDep, owner: OwnerDep, settings: SettingsDep,
                         storage: StorageDep) -> DatasetRead:
    """Upload a data set: multipart `file` (.csv with header, or .npz with X and y) plus `name`, `target`,
    `task`; or a JSON body `{name, X, y, task}`. Streamed to disk, parsed, stored as float32 arrays."""
    received = await upload.receive(request, max_bytes=settings.max_upload_bytes, tmp_dir=storage.temp_dir(),
                                    parse=partial(service.parse, settings=settings))   # a CSV, as it arrives
    try:
        row = await run_in_threadpool(service.create, session, owner=owner, storage=storage, upload=received,
                                      settings=settings)
    finally:
        received.cleanup()
    return DatasetRead.model_validate(row)


@router.get("", response_model=DatasetList)
def list_datasets(session: SessionDep, owner: OwnerDep, page: PageDep) -> DatasetList:
    """List data sets, newest first."""
    rows, total = service.list_(session, owner=owner, limit=page.limit, offset=page.offset)
    return DatasetList(items=[DatasetRead.model_validate(r) for r in rows], total=total)


@router.get("/{dataset_id}", response_model=DatasetRead, responses=_ERRORS)
def get_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> DatasetRead:
    """Read one data set's metadata."""
    return DatasetRead.model_validate(service.get_or_raise(session, owner=owner, dataset_id=dataset_id))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={**_ERRORS, 409: {"description": "A queued or running job uses this data set."}})
def delete_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep, storage: StorageDep) -> Response:
    """Delete a data set and its stored arrays."""
    service.delete(session, owner=owner, storage=storage, dataset_id=dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
