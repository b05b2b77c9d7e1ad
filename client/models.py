"""What the API answers, as small frozen dataclasses (no pydantic: the client stays light).

Each keeps the whole JSON object it was read from in `raw`, so fields the server adds
later are not lost to a script that needs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class JobError:
    type: str
    message: str


@dataclass(frozen=True)
class Job:
    id: str
    function: str
    status: str
    params: dict[str, Any]
    progress: float
    progress_message: str | None
    result: dict[str, Any] | None
    error: JobError | None
    name: str | None
    tags: list[str]
    attempts: int
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        error = data.get("error")
        return cls(
            id=str(data["id"]),
            function=str(data["function"]),
            status=str(data["status"]),
            params=dict(data.get("params") or {}),
            progress=float(data.get("progress") or 0.0),
            progress_message=data.get("progress_message"),
            result=data.get("result"),
            error=JobError(str(error["type"]), str(error["message"])) if error else None,
            name=data.get("name"),
            tags=list(data.get("tags") or []),
            attempts=int(data.get("attempts") or 0),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            raw=dict(data),
        )

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def run_time_s(self) -> float | None:
        """Seconds between the worker starting and finishing it (the server's own time)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def artefact_ids(self) -> list[str]:
        """Ids of the files this job made: every `*file_id` / `*file_ids` value in its
        result that is not one of its inputs (named in its params)."""
        inputs = set(_file_ids(self.params))
        return [i for i in dict.fromkeys(_file_ids(self.result or {})) if i not in inputs]


def _file_ids(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _file_ids(v, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from _file_ids(item, key)
    elif isinstance(value, str) and key.endswith(("file_id", "file_ids")):
        try:
            yield str(uuid.UUID(value))
        except ValueError:
            return


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event log: a status change, progress, or a log line."""

    seq: int
    kind: str
    status: str
    progress: float | None
    message: str | None
    created_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobEvent:
        progress = data.get("progress")
        return cls(
            seq=int(data["seq"]),
            kind=str(data["kind"]),
            status=str(data["status"]),
            progress=None if progress is None else float(progress),
            message=data.get("message"),
            created_at=_time(data.get("created_at")),
        )

    @property
    def final(self) -> bool:
        return self.kind == "status" and self.status in TERMINAL


@dataclass(frozen=True)
class FileInfo:
    id: str
    name: str
    size: int
    sha256: str | None
    kind: str | None
    owner_id: str | None
    dataset_id: str | None
    created_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileInfo:
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            size=int(data["size"]),
            sha256=data.get("sha256"),
            kind=data.get("kind"),
            owner_id=None if data.get("owner_id") is None else str(data["owner_id"]),
            dataset_id=None if data.get("dataset_id") is None else str(data["dataset_id"]),
            created_at=_time(data.get("created_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Function:
    """A capability as `GET /functions` shows it."""

    name: str
    description: str
    params_schema: dict[str, Any]
    result_schema: dict[str, Any]
    resources: dict[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Function:
        return cls(
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            params_schema=dict(data.get("params_schema") or {}),
            result_schema=dict(data.get("result_schema") or {}),
            resources=dict(data.get("resources") or {}),
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class UploadResult:
    """What `upload` did: the stored file, and whether the bytes had to travel."""

    file: FileInfo
    skipped: bool = False
    """The user already had a file with these bytes (same SHA-256 and size)."""
    resumed_parts: int = 0
    """Parts an earlier, interrupted run had already stored."""
    sent_bytes: int = 0
