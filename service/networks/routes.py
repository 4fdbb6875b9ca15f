"""HTTP routes of /v1/networks: thin wrappers over service functions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response, status

from service.deps import OwnerDep, PageDep, SessionDep, SettingsDep
from service.http import GuardedRoute
from service.networks import service
from service.networks.schemas import (BINARY_EXAMPLE, REGRESSION_EXAMPLE, WINE_EXAMPLE, NetworkCreate, NetworkList,
                                      NetworkRead)

router = APIRouter(prefix="/v1/networks", tags=["networks"], route_class=GuardedRoute)

_ERRORS = {404: {"description": "No network with this id (for this caller)."}}
_EXAMPLES = {
    "multiclass": {"summary": "3 classes: softmax + cross_entropy", "value": WINE_EXAMPLE},
    "binary": {"summary": "2 classes: 1 sigmoid unit + binary_cross_entropy", "value": BINARY_EXAMPLE},
    "regression": {"summary": "regression: linear output + mse", "value": REGRESSION_EXAMPLE},
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NetworkRead,
             responses={413: {"description": "More parameters than the tenant's quota_max_params."},
                        422: {"description": "Invalid spec: the detail names the field (e.g. `layers[1].activation:"
                                             " softmax is only allowed in the last layer`) or the limit."}})
def create_network(body: Annotated[NetworkCreate, Body(openapi_examples=_EXAMPLES)], session: SessionDep,
                   owner: OwnerDep, settings: SettingsDep) -> NetworkRead:
    """Create a network architecture; the engine validates it and counts its parameters."""
    return NetworkRead.from_row(service.create(session, owner=owner, body=body, settings=settings))


@router.get("", response_model=NetworkList)
def list_networks(session: SessionDep, owner: OwnerDep, page: PageDep) -> NetworkList:
    """List networks, newest first."""
    rows, total = service.list_(session, owner=owner, limit=page.limit, offset=page.offset)
    return NetworkList(items=[NetworkRead.from_row(r) for r in rows], total=total)


@router.get("/{network_id}", response_model=NetworkRead, responses=_ERRORS)
def get_network(network_id: str, session: SessionDep, owner: OwnerDep) -> NetworkRead:
    """Read one network."""
    return NetworkRead.from_row(service.get_or_raise(session, owner=owner, network_id=network_id))


@router.delete("/{network_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={**_ERRORS, 409: {"description": "A queued or running job uses this network."}})
def delete_network(network_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """Delete a network (trained models made from it keep working)."""
    service.delete(session, owner=owner, network_id=network_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
