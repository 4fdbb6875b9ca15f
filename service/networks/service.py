"""Network service functions: validate a spec with the engine, store, read, list, delete."""

from __future__ import annotations

from sqlalchemy.orm import Session

import core
from service import quotas
from service.errors import InvalidInput
from service.jobs import usage as jobs_usage
from service.networks.schemas import NetworkCreate
from service.database import get_owned, get_owned_or_raise, lock_for_write, new_id, page
from service.networks.tables import Network


def check_limits(spec: dict, *, input_dim: int | None, settings) -> int | None:
    """Validate ``spec`` with the engine and the service limits; returns n_params (None if input_dim unknown).

    Raises InvalidInput naming the field (the engine's ValueError message, or the limit and its setting).
    """
    n_layers = len(spec.get("layers") or ())
    if n_layers > settings.max_layers:
        raise InvalidInput(f"layers: {n_layers} layers exceed the limit max_layers={settings.max_layers} "
                           f"(MLP_MAX_LAYERS)")
    try:
        n_params = core.count_params(spec, input_dim)
        # Without input_dim, the parameters after the first layer are still a lower bound worth checking.
        lower = n_params if n_params is not None else core.count_params(spec, 1)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    units = sum(int(layer.get("units", 0)) for layer in spec.get("layers") or () if isinstance(layer, dict))
    per_row = units + int(input_dim or 0)
    if per_row > settings.max_row_activations:
        raise InvalidInput(f"layers: one row needs {per_row:,} activation values (input width plus every layer's "
                           f"units), more than the limit max_row_activations={settings.max_row_activations:,} "
                           "(MLP_MAX_ROW_ACTIVATIONS)")
    if lower > settings.max_params:
        where = "" if n_params is not None else " even with input_dim=1"
        raise InvalidInput(f"layers: the network has {lower:,} parameters{where}, more than the limit "
                           f"max_params={settings.max_params:,} (MLP_MAX_PARAMS)")
    return n_params


def create(session: Session, *, owner: str, body: NetworkCreate, settings, commit: bool = True) -> Network:
    """Validate the architecture with core.Network.from_spec and store it (``commit=False``: added to the
    caller's transaction, which commits it with its own rows; its id is set here, so nothing is flushed yet)."""
    spec = body.to_spec()
    n_params = check_limits(spec, input_dim=body.input_dim, settings=settings)
    quotas.check_params(settings, owner=owner, n_params=n_params)
    try:
        net = core.Network.from_spec(spec)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    normalized = dict(net.spec)
    row = Network(id=new_id(), owner=owner, name=body.name, spec=normalized, input_dim=body.input_dim,
                  output_dim=int(net.output_dim), n_params=n_params, task=net.task)
    session.add(row)
    if commit:
        session.commit()
    return row


def get(session: Session, *, owner: str, network_id: str) -> Network | None:
    """The caller's network with this id, or None."""
    return get_owned(session, Network, owner=owner, row_id=network_id)


def get_or_raise(session: Session, *, owner: str, network_id: str) -> Network:
    """The caller's network, or NotFound (also for another tenant's id)."""
    return get_owned_or_raise(session, Network, owner=owner, row_id=network_id, noun="network")


def list_(session: Session, *, owner: str, limit: int, offset: int) -> tuple[list[Network], int]:
    """One page of the caller's networks, newest first, and the total count."""
    return page(session, Network, Network.owner == owner, limit=limit, offset=offset)


def delete(session: Session, *, owner: str, network_id: str) -> None:
    """Delete the network; 409 while a queued or running job still needs it. Trained models stay."""
    lock_for_write(session, rows=[(Network, network_id)])  # serialised with POST /v1/jobs using it
    row = get_or_raise(session, owner=owner, network_id=network_id)
    jobs_usage.ensure_unused(session, owner=owner, network_id=network_id)
    session.delete(row)
    session.commit()
