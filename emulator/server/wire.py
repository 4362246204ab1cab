"""Values on the wire of AWS JSON 1.1, shaped by botocore's service models.

Responses are built from the model's output shape, never from a hand-written list of members:
members the model does not define are left out, numbers get the model's type, and timestamps
(ISO 8601 strings in the job records, or datetimes) go out as epoch seconds, as the protocol
wants (SDK v3 parses every member into typed models: a wrong type breaks it)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.model import ServiceModel, Shape


@functools.cache
def service_model(service: str) -> ServiceModel:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def output(service: str, operation: str, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as ``operation``'s response on the wire."""
    shape = service_model(service).operation_model(operation).output_shape
    if shape is None:
        return {}
    shaped = to_wire(shape, value)
    return shaped if isinstance(shaped, dict) else {}


def to_wire(shape: Shape, value: Any) -> Any:
    """``value`` as ``shape`` says it travels; None for what it cannot hold."""
    kind = shape.type_name
    if value is None:
        return None
    if kind == "structure":
        if not isinstance(value, dict):
            return None
        members = shape.members  # type: ignore[attr-defined]
        shaped = {
            name: to_wire(members[name], item) for name, item in value.items() if name in members
        }
        return {name: item for name, item in shaped.items() if item is not None}
    if kind == "list":
        if not isinstance(value, list | tuple):
            return None
        member = shape.member  # type: ignore[attr-defined]
        return [item for item in (to_wire(member, v) for v in value) if item is not None]
    if kind == "map":
        if not isinstance(value, dict):
            return None
        inner = shape.value  # type: ignore[attr-defined]
        return {str(k): to_wire(inner, v) for k, v in value.items()}
    if kind == "timestamp":
        return epoch_seconds(value)
    if kind in ("integer", "long"):
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if kind in ("float", "double"):
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "string":
        return value if isinstance(value, str) else None
    return value


def epoch_seconds(value: Any) -> float | None:
    """A timestamp as epoch seconds: from an ISO 8601 string, a datetime or a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return round(moment.timestamp(), 3)
    return None


def moment(value: Any) -> datetime | None:
    """An input timestamp (epoch seconds, as botocore sends them, or ISO 8601) as a datetime."""
    seconds = epoch_seconds(value)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)
