"""Parameters checked on this side against a function's published JSON Schema, so a
mistake is reported before anything is uploaded or submitted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from client.errors import ParamsInvalid
from client.models import Function

#: A stand-in id for the file parameter while the real file is not uploaded yet.
PLACEHOLDER_FILE_ID = "00000000-0000-4000-8000-000000000000"


def check_params(function: Function, params: Mapping[str, Any]) -> None:
    """Raise `ParamsInvalid` listing every way `params` breaks the function's schema."""
    from jsonschema import Draft202012Validator, FormatChecker  # only when checking

    validator = Draft202012Validator(function.params_schema, format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(dict(params)), key=lambda e: list(e.absolute_path))
    if errors:
        raise ParamsInvalid(function.name, [_describe(e) for e in errors])


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else str(error.message)


def file_parameter(function: Function) -> str:
    """The parameter that names the input file: `file_id`, else the one property whose
    name ends in `file_id`. ValueError if the function takes no single file."""
    properties = function.params_schema.get("properties", {})
    if "file_id" in properties:
        return "file_id"
    candidates = [name for name in properties if name.endswith("file_id")]
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise ValueError(
            f"function {function.name!r} needs exactly one file parameter (a property named "
            f"file_id or ending in file_id); found: {found}"
        )
    return candidates[0]
