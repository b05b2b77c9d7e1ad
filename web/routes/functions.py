"""The capability registry as the API shows it: names, parameter schemas, resources."""

from __future__ import annotations

from fastapi import APIRouter

from common.capabilities import Capability, get_capability, registered
from web.schemas import FunctionPublic

router = APIRouter(prefix="/functions", tags=["functions"])


def _public(capability: Capability) -> FunctionPublic:  # type: ignore[type-arg]
    return FunctionPublic(
        name=capability.name,
        description=capability.description,
        params_schema=capability.params_schema(),
        result_schema=capability.result_schema(),
        resources=capability.resources,
    )


@router.get("")
def read_functions() -> list[FunctionPublic]:
    """Every capability with its parameter and result JSON Schemas and its resources."""
    return [_public(capability) for capability in registered().values()]


@router.get("/{name}")
def read_function(name: str) -> FunctionPublic:
    """One capability by name."""
    return _public(get_capability(name))
