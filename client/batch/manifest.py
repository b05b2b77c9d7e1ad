"""The batch manifest: one JSON file that says, for every input, how far it got.

It is rewritten atomically (temp file, fsync, rename) after every change, so whatever
stops the batch (Ctrl-C, a crash, a lost connection) leaves a consistent file that the
next run resumes from: succeeded inputs are skipped, submitted jobs are waited for
again rather than resubmitted, uploads resume where their parts stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VERSION = 1

#: Statuses an input moves through. `submitting` marks a submission that may or may not
#: have reached the server; the next run looks its job up by tag before submitting again.
PENDING, UPLOADING, UPLOADED, SUBMITTING = "pending", "uploading", "uploaded", "submitting"
QUEUED, RUNNING, DOWNLOADING = "queued", "running", "downloading"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
WITH_JOB = frozenset({QUEUED, RUNNING, "cancelling", DOWNLOADING})


@dataclass
class Entry:
    key: str
    """What the input is: an absolute local path, or `file:<id>` for a dataset's file."""
    name: str
    """Its folder under the output directory."""
    path: str | None = None
    file_id: str | None = None
    job_id: str | None = None
    status: str = PENDING
    stage: str | None = None
    """Where it failed: upload, submit, run or download."""
    error: str | None = None
    artefacts: list[str] = field(default_factory=list)
    progress: float = 0.0
    message: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def fail(self, stage: str, error: str, status: str = FAILED) -> None:
        self.status, self.stage, self.error = status, stage, error


@dataclass
class Manifest:
    path: Path
    server: str
    function: str
    params: dict[str, Any]
    file_param: str
    out: str
    batch_id: str = field(default_factory=lambda: secrets.token_hex(6))
    entries: list[Entry] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        if data.get("version") != VERSION:
            raise ValueError(f"{path} is not a version-{VERSION} aperture batch manifest")
        entries = [Entry(**e) for e in data.pop("entries")]
        data.pop("version")
        return cls(path=path, entries=entries, **data)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        for entry in data["entries"]:
            entry.pop("progress")
            entry.pop("message")
        return {"version": VERSION, **data}

    def save(self) -> None:
        """Atomically: a reader (or the next run) sees the old file or the new one."""
        self.updated_at = time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def entry(self, key: str) -> Entry | None:
        return next((e for e in self.entries if e.key == key), None)

    def tag(self, entry: Entry) -> str:
        """The job tag that finds this input's job again (idempotent submission)."""
        return f"batch-{self.batch_id}-{self.entries.index(entry)}"

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for entry in self.entries:
            found[entry.status] = found.get(entry.status, 0) + 1
        return found

    def settle_interrupted(self) -> None:
        """After an interruption: an upload in flight goes back to pending (its parts
        resume from the server's list); nothing else needs changing."""
        for entry in self.entries:
            if entry.status == UPLOADING:
                entry.status = PENDING
        self.save()
