"""The OpenAPI document, made to tell the truth.

FastAPI describes the happy path. This module adds, for every operation, what else it
can answer, derived from the route itself rather than written per route:

- errors as `application/problem+json` with the `Problem` schema (the body
  `web.errors` sends), the 422 included (FastAPI's default is a `detail` array we
  never send);
- which errors: from the route's shape (path parameters: 404; parameters: 422; a JSON
  body: 400 malformed, 415 another media type), from its dependencies (an identity:
  401, and 403 for the CSRF rule on writes; the admin role: 403; a file source: the
  import and upload refusals), and from the domain errors a few handlers raise
  (`DOMAIN_ERRORS`, keyed by operation: the part no signature can show);
- security schemes (bearer token or API key, `X-API-Key`, the session cookie), so
  `/docs` has an Authorize button, on every operation that needs an identity;
- the media types of what is not JSON: downloads, tiles, the Deep Zoom descriptor,
  Server-Sent Events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field

from web.errors import PROBLEM_JSON, TYPE_PREFIX

Operation = dict[str, Any]

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /auth/login (or a Supabase access "
        "token), or an API key (`ap_...`) from POST /auth/api-keys. No CSRF token needed.",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key from POST /auth/api-keys. No CSRF token needed.",
    },
    "cookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "aperture_access",
        "description": "The session cookie that POST /auth/login sets (browsers). Writes "
        "also need the X-CSRF-Token header equal to the aperture_csrf cookie.",
    },
}
SECURITY: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]

UNSAFE = {"post", "put", "patch", "delete"}


class ValidationItem(BaseModel):
    loc: list[str] = Field(description="Where: body, query, path or header, then the field.")
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description=f"Stable problem type, `{TYPE_PREFIX}<code>`.")
    title: str
    status: int
    detail: str = Field(description="What is wrong, for a person.")
    instance: str | None = Field(default=None, description="The request's path.")
    request_id: str | None = Field(default=None, description="Also in X-Request-ID.")
    errors: list[ValidationItem] | None = Field(
        default=None, description="Each invalid field (422 validation problems)."
    )


#: Why each status is answered, in the words the document shows.
REASONS = {
    400: "Malformed request: broken JSON (with line and column) or multipart body",
    401: "No valid credentials",
    403: "Not allowed: the admin role, the CSRF token of a cookie-authenticated write, "
    "or a path outside the import roots",
    404: "No such resource, or not yours",
    409: "The resource is not in a state that allows this",
    413: "Larger than allowed, or over the storage quota",
    415: "Unsupported media type or file type",
    416: "Range not satisfiable",
    422: "Invalid input: a field, a parameter or a value the server checks",
    429: "Too many attempts; see Retry-After",
    507: "The store is full; nothing was stored",
}

#: Statuses that come with a dependency, whichever route uses it (by qualified name).
DEPENDENCY_ERRORS: dict[str, set[int]] = {
    "current_principal": {401},
    "require_admin": {403},
    # A file source: a stored file (404, unsupported type 415) or an import from the
    # server's disk (disabled or outside the roots 403, copied in: quota 413, full 507).
    "source_files": {403, 404, 413, 415, 422, 507},
    # A job of the wrong function is 422.
    "owned_job_of.<locals>.dependency": {422},
}

#: Domain errors raised by a handler itself: what no signature shows.
DOMAIN_ERRORS: dict[str, set[int]] = {
    "POST /api/v1/inference": {404},  # the slide or the model
    "POST /api/v1/inference/models": {404},  # the ONNX file
    "POST /api/v1/auth/register": {404, 409},  # closed registration, a taken email
    "POST /api/v1/auth/login": {401, 404, 429},  # throttled after failures
    "POST /api/v1/auth/refresh": {401, 404},
    "POST /api/v1/users": {409},
    "PATCH /api/v1/users/{user_id}": {409},
    "PATCH /api/v1/users/me": {401},
    "POST /api/v1/users/{user_id}/deactivate": {409},
    "POST /api/v1/jobs": {404},  # an unknown function, or a file it names is not yours
    "POST /api/v1/jobs/{job_id}/cancel": {409},
    "DELETE /api/v1/jobs/{job_id}/cancel": {409},
    "POST /api/v1/files": {400, 413, 415, 507},  # a broken multipart body is 400
    "POST /api/v1/files/uploads": {404, 413},
    "POST /api/v1/files/uploads/{upload_id}/complete": {409, 413, 415, 507},
    "DELETE /api/v1/files/uploads/{upload_id}": {409},
    "POST /api/v1/files/import": {403, 404, 413, 415, 507},
    "GET /api/v1/files/{file_id}/download": {416},
    "POST /api/v1/datasets/{dataset_id}/files": {404},
    "POST /api/v1/processing/merge": {404, 409},
    "GET /api/v1/processing/workflow/results/{job_id}": {409},
    "POST /api/v1/processing/workflow/cancel/{job_id}": {409},
    "POST /api/v1/analysis/fitting/cancel/{job_id}": {409},
    "GET /api/v1/analysis/fitting/results/{job_id}": {409},
    "GET /api/v1/signed/object": {400, 403, 404},
    "PUT /api/v1/signed/object": {400, 403, 413, 507},
    "PUT /api/v1/signed/part": {400, 403, 404, 413, 507},
}

BINARY = {"schema": {"type": "string", "format": "binary"}}
#: What an operation answers that is not JSON, by endpoint name: status -> media types.
MEDIA_TYPES: dict[str, dict[str, dict[str, Any]]] = {
    "download_file": {
        "200": {"application/octet-stream": BINARY, "*/*": BINARY},
        "206": {"application/octet-stream": BINARY, "*/*": BINARY},
    },
    "read_signed_object": {"200": {"application/octet-stream": BINARY, "*/*": BINARY}},
    "update_signed_object": {"200": {}},
    "update_signed_part": {"200": {}},
    "read_job_events": {
        "200": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "description": "One Server-Sent Event per job event; `data` is the "
                    "event as JSON (JobEventRecord), `id` its seq (for Last-Event-ID).",
                    "properties": {
                        "id": {"type": "string"},
                        "event": {"type": "string", "enum": ["status", "progress", "log"]},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": "#/components/schemas/JobEventRecord"},
                        },
                        "retry": {"type": "integer"},
                    },
                }
            }
        }
    },
    "read_tile": {"200": {"image/jpeg": BINARY, "image/png": BINARY}},
    "read_slide_thumbnail": {"200": {"image/jpeg": BINARY}},
    "read_slide_associated_image": {"200": {"image/png": BINARY}},
    "read_dzi": {
        "200": {
            "application/xml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        }
    },
}
#: Raw request bodies the handler reads itself.
RAW_BODIES = {"update_signed_object", "update_signed_part"}


def _dependency_names(dependant: Dependant) -> Iterator[str]:
    stack = [dependant]
    while stack:
        current = stack.pop()
        if current.call is not None:
            yield getattr(current.call, "__qualname__", "")
        stack.extend(current.dependencies)


def _json_body(operation: Operation) -> bool:
    content = operation.get("requestBody", {}).get("content", {})
    return "application/json" in content


def error_statuses(path: str, method: str, operation: Operation, dependant: Dependant) -> set[int]:
    """Every error status the operation can answer."""
    statuses: set[int] = set()
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters):
        statuses |= {404, 422}
    if parameters or "requestBody" in operation:
        statuses.add(422)
    if _json_body(operation):
        statuses |= {400, 415}
    names = set(_dependency_names(dependant))
    for name in names:
        statuses |= DEPENDENCY_ERRORS.get(name, set())
    if "current_principal" in names and method in UNSAFE:
        statuses.add(403)  # the CSRF rule of cookie-authenticated writes
    statuses |= DOMAIN_ERRORS.get(f"{method.upper()} {path}", set())
    return statuses


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": REASONS.get(status, "Error"),
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return response


def _parameters_never_null(operation: Operation) -> None:
    """A query, header or path parameter cannot be null: absent is how it is left out,
    and the text `null` is not a value (FastAPI's `X | None` declares `anyOf [X, null]`,
    which a client may then send as `Last-Event-ID: null`)."""
    for parameter in operation.get("parameters", []):
        schema = parameter["schema"]
        kept = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
        if len(kept) == 1 and len(schema["anyOf"]) == 2:
            del schema["anyOf"]
            schema.update(kept[0])
            if "default" in schema and schema["default"] is None:
                del schema["default"]


def _describe(
    path: str, method: str, operation: Operation, dependant: Dependant, name: str
) -> None:
    _parameters_never_null(operation)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for error in sorted(error_statuses(path, method, operation, dependant)):
        responses[str(error)] = _problem_response(error)
    for status, declared in responses.items():
        if status.startswith(("4", "5")) and "content" not in declared:
            # A route that declares an error with a description only: its body is ours.
            declared["content"] = _problem_response(int(status))["content"]
    for status, content in MEDIA_TYPES.get(name, {}).items():
        entry: dict[str, Any] = responses.setdefault(status, {"description": "Successful Response"})
        if content:
            entry["content"] = content
        else:
            entry.pop("content", None)
    if name in RAW_BODIES:
        operation["requestBody"] = {"content": {"application/octet-stream": BINARY}}
    if "current_principal" in set(_dependency_names(dependant)):
        operation["security"] = SECURITY


def _routes(app: FastAPI) -> dict[tuple[str, str], tuple[Dependant, str]]:
    """(path, method) -> (dependant, endpoint name) of every documented route."""
    found = {}
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None or not route.methods or route.path_format is None:
            continue
        name = getattr(route.endpoint, "__name__", "")
        for method in route.methods:
            found[(route.path_format, method.lower())] = (dependant, name)
    return found


def _components(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    components["securitySchemes"] = SECURITY_SCHEMES


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the errors, security and media types filled in."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    _components(schema)
    routes = _routes(app)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if (path, method) in routes:
                dependant, name = routes[(path, method)]
                _describe(path, method, operation, dependant, name)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve `build_openapi`'s document at /openapi.json (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
