"""What the running app holds, built once in the app's lifespan and closed at shut-down
(the runtime holds the stores), plus the few actions every router performs the same way
(submitting and cancelling jobs with their audit record, importing a server file with
the upload checks)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from common.capabilities import StoredFile
from common.executors.base import Executor
from common.identity import Client, Identity, Principal
from common.jobs.models import JobRecord
from common.jobs.service import JobService
from common.runtime import Runtime
from common.settings import Settings
from web.hub import EventHub

if TYPE_CHECKING:  # web.slides depends on web.deps, which depends on this module
    from web.slides import SlideService


@dataclass
class AppState:
    settings: Settings
    runtime: Runtime
    executor: Executor
    jobs: JobService
    hub: EventHub
    identity: Identity
    slides: SlideService

    def submit_job(
        self,
        user: Principal,
        client: Client,
        function: str,
        params: BaseModel | dict[str, Any],
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        on_behalf_of: uuid.UUID | None = None,
    ) -> JobRecord:
        """Submit a job for `user` and record it in the audit log. `on_behalf_of`: the
        owner of what the job works on, when an admin submits it (the job runs as them,
        so it may read their files); the audit names the admin."""
        owner_id = on_behalf_of if on_behalf_of is not None else user.id
        job = self.jobs.submit(function, params, owner_id=owner_id, name=name, tags=tags)
        self.identity.audit.record(
            "job.submitted",
            actor=user.id,
            target_type="job",
            target_id=job.id,
            client_ip=client.ip,
            function=function,
        )
        return job

    def cancel_job(self, user: Principal, client: Client, job_id: uuid.UUID) -> JobRecord:
        """Cancel a job (and its children) and record it in the audit log."""
        cancelled = self.jobs.cancel(job_id)
        self.identity.audit.record(
            "job.cancelled", actor=user.id, target_type="job", target_id=job_id, client_ip=client.ip
        )
        return cancelled

    def import_file(self, user: Principal, path: Path, *, name: str | None = None) -> StoredFile:
        """Copy an already resolved server path in as `user`'s file, checked like an upload
        (type against name, truncation, quota)."""
        return self.runtime.uploads.import_file(path, owner_id=user.id, name=name)
