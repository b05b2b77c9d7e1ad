"""The capability contract: a named, typed, resource-declaring pure function.

A capability is what a job runs. It is declared once with `@capability(...)` and the
same declaration feeds the API (parameter schema), the local worker pool and the Modal
app (resources), so the three can never drift apart.

The declaration also says what is checked when a job is submitted, before its record
exists (:func:`submit_check`): every stored file its params name (fields `file_id`,
`*_file_id`, `*_file_ids`) must be one the owner may read, and a capability may add a
`check` that reads cheap facts (a file's header, a table's columns) and refuses what
would only fail later. `JobService.submit` runs it for POST /jobs and the convenience
routes alike.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

from common.errors import UnknownCapability

if TYPE_CHECKING:  # both import this module
    from common.objects import ObjectStore
    from common.runtime import Runtime

log = logging.getLogger("aperture.capabilities")

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


#: Validation context for params validated once already: a job's params as stored when it
#: was submitted (read back by the runner), or a model rebuilt from validated values.
#: Structure is still checked; validators that derive something from params (a fitting
#: job's resolved spec) keep what the first validation derived instead of deriving again.
VALIDATED: dict[str, Any] = {"validated": True}


def validated_before(info: ValidationInfo) -> bool:
    """Whether a validator runs on params that were validated before (:data:`VALIDATED`)."""
    return bool(info.context and info.context.get("validated"))


class Resources(BaseModel):
    """What one run of a capability needs; read by the local pool and the Modal app."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: float = Field(default=1.0, gt=0)
    memory_mib: int = Field(default=1024, gt=0)
    gpu: str | None = Field(default=None, description='None, or a Modal GPU type such as "H100".')
    timeout_s: int = Field(default=3600, gt=0)
    retries: int = Field(default=0, ge=0, le=10)
    max_containers: int | None = Field(default=None, gt=0)


class StoredFile(BaseModel):
    """A file record as a capability sees it: where its bytes are and what it is."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    owner_id: UUID | None
    name: str
    key: str
    size: int
    sha256: str | None = None
    kind: str | None = None
    content_type: str | None = None


class SubmitContext(Protocol):
    """What a submit-time check may read: records and stored bytes. Nothing runs yet and
    nothing is written; a check raises InvalidInput, NotFound or UnsupportedFile."""

    owner_id: UUID | None

    @property
    def objects(self) -> ObjectStore: ...

    def file(self, file_id: UUID) -> StoredFile:
        """A stored file the owner may read; NotFound otherwise (missing or another's)."""
        ...


def referenced_files(params: BaseModel) -> list[UUID]:
    """The stored files `params` name by convention: fields `file_id`, `*_file_id`
    (an id) and `*_file_ids` (a list of ids), the names clients fill with file ids."""
    found: list[UUID] = []
    for name in type(params).model_fields:
        if not (name == "file_id" or name.endswith(("_file_id", "_file_ids"))):
            continue
        value = getattr(params, name)
        values = value if isinstance(value, list | tuple) else [value]
        found += [v for v in values if isinstance(v, UUID)]
    return found


def submit_check(capability: Capability[Any, Any], params: BaseModel, ctx: SubmitContext) -> Any:
    """Params checked against records before a job exists: the files they name, then the
    capability's own `check`. Returns the params to store."""
    for file_id in referenced_files(params):
        ctx.file(file_id)
    return capability.check(params, ctx) if capability.check else params


class ChildOutcome(BaseModel):
    """How a child job spawned with `ctx.spawn` ended."""

    job_id: UUID
    status: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class Context(Protocol):
    """The only way a capability touches the world (database, storage, other jobs)."""

    job_id: UUID
    owner_id: UUID | None
    device: Literal["cpu", "gpu"]

    @property
    def objects(self) -> ObjectStore: ...

    @property
    def runtime(self) -> Runtime:
        """Database and settings, for platform capabilities that keep records (cleanup,
        slide records) and for reading deployment settings (`tiles.pyramid` fans out
        only where children get machines of their own)."""
        ...

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1]; cheap to call often (writes are throttled)."""

    def log(self, message: str) -> None:
        """Append a log line to the job's event stream."""

    def cancelled(self) -> bool:
        """True once cancellation was asked for; long loops check it between steps."""

    def file(self, file_id: UUID) -> StoredFile:
        """A stored file the job's owner may read; raises NotFound otherwise."""

    def save_file(
        self,
        name: str,
        source: bytes | IO[bytes],
        *,
        content_type: str | None = None,
        kind: str | None = None,
    ) -> StoredFile:
        """Store an artefact as a new file record owned by the job's owner."""

    def spawn(self, function: str, params: BaseModel | dict[str, Any]) -> UUID:
        """Submit a child job (fan-out); returns its id."""

    def gather(self, job_ids: Sequence[UUID]) -> list[ChildOutcome]:
        """Wait for child jobs to end; cancels them if this job is cancelled."""


@dataclass(frozen=True)
class Capability(Generic[P, R]):
    name: str
    params: type[P]
    result: type[R]
    run: Callable[[P, Context], R]
    resources: Resources = field(default_factory=Resources)
    description: str = ""
    #: Its own submit-time check (see the module docstring): validated params in, params
    #: to store out (unchanged, or planned from what it read, so the job need not read
    #: it again); None: only the files are checked.
    check: Callable[[P, SubmitContext], P] | None = None

    def params_schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()

    def result_schema(self) -> dict[str, Any]:
        return self.result.model_json_schema()


_registry: dict[str, Capability[Any, Any]] = {}
_import_errors: dict[str, str] = {}


def capability(
    name: str,
    *,
    params: type[P],
    result: type[R],
    resources: Resources | None = None,
    check: Callable[[P, SubmitContext], P] | None = None,
) -> Callable[[Callable[[P, Context], R]], Callable[[P, Context], R]]:
    """Register `run(params, ctx) -> result` under `name`; its docstring is the description.
    `check` is its submit-time check (see the module docstring)."""

    def register(run: Callable[[P, Context], R]) -> Callable[[P, Context], R]:
        if name in _registry and _registry[name].run is not run:
            raise ValueError(f"capability {name!r} is registered twice")
        doc = (run.__doc__ or "").strip().split("\n\n")[0]
        _registry[name] = Capability(
            name=name,
            params=params,
            result=result,
            run=run,
            resources=resources or Resources(),
            description=" ".join(doc.split()),
            check=check,
        )
        return run

    return register


def load_capabilities(extra_modules: Iterable[str] = ()) -> dict[str, Capability[Any, Any]]:
    """Import every top-level module and package of `functions/` (each registers its
    capabilities on import), then `extra_modules`. Idempotent.

    Discovery means a new capability needs no edit here; modules keep heavy imports
    (scipy, openslide, cupy) inside function bodies so this stays cheap.
    """
    import functions

    names = [f"functions.{m.name}" for m in pkgutil.iter_modules(functions.__path__)]
    for module in (*sorted(names), *extra_modules):
        try:
            importlib.import_module(module)
            _import_errors.pop(module, None)
        except Exception as error:  # one broken module must not take the others down
            _import_errors[module] = f"{type(error).__name__}: {error}"
            log.error("capability module %s failed to import", module, exc_info=True)
    return registered()


def import_errors() -> dict[str, str]:
    """Capability modules that failed to import, with the error (shown by /health)."""
    return dict(_import_errors)


def get_capability(name: str) -> Capability[Any, Any]:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownCapability(f"no capability named {name!r}") from None


def registered() -> dict[str, Capability[Any, Any]]:
    return dict(sorted(_registry.items()))
