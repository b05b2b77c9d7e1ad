"""Inference records: users' registered ONNX models, admins' external services, tasks
(a job started by `POST /inference`, with its slide and model) and the events external
services report through the signed webhook.

Services are read without their secret; only `sealed_secret` returns it, sealed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from common.errors import Conflict, NotFound
from common.jobs.models import JobRecord
from common.jobs.status import TERMINAL, Status
from common.records import File, Job, insert_unique, transaction
from common.records.models import (
    InferenceCallback,
    InferenceModel,
    InferenceService,
    InferenceTask,
)
from common.records.types import utcnow


class ModelRecord(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None
    name: str
    kind: str
    file_id: uuid.UUID
    spec: dict[str, Any]
    created_at: datetime


class ServiceRecord(BaseModel):
    """An external service as everyone but the webhook check sees it: no secret."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None
    name: str
    description: str | None
    base_url: str
    mpp: float | None
    output: dict[str, Any]
    params_schema: dict[str, Any] | None
    created_at: datetime


class TaskRecord(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None
    slide_id: uuid.UUID
    model_kind: str
    model_name: str
    model_id: uuid.UUID | None
    created_at: datetime


class CallbackRecord(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    task_id: uuid.UUID
    event_id: str
    status: str
    progress: float | None
    message: str | None
    predictions_key: str | None
    predictions_url: str | None
    received_at: datetime


@dataclass(frozen=True)
class TaskFilter:
    owner_id: uuid.UUID | None = None
    all_owners: bool = False  # admins
    slide_id: uuid.UUID | None = None
    model: str | None = None  # the model's name
    status: Status | None = None


class InferenceRecords:
    """The four inference tables (see the module docstring)."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def __repr__(self) -> str:
        return "InferenceRecords()"

    # registered ONNX models ---------------------------------------------------------

    def add_model(
        self, *, owner_id: uuid.UUID | None, name: str, file_id: uuid.UUID, spec: dict[str, Any]
    ) -> ModelRecord:
        now = utcnow()
        row = InferenceModel(
            id=uuid.uuid4(),
            owner_id=owner_id,
            name=name,
            kind="onnx",
            file_id=file_id,
            spec=spec,
            created_at=now,
            updated_at=now,
        )
        insert_unique(self.db, row, f"you already have a model named {name!r}")
        return ModelRecord.model_validate(row)

    def models(self, owner_id: uuid.UUID | None) -> list[ModelRecord]:
        """The owner's models, by name."""
        with self.db() as session:
            rows = session.scalars(
                select(InferenceModel)
                .where(InferenceModel.owner_id == owner_id)
                .order_by(InferenceModel.name)
            )
            return [ModelRecord.model_validate(r) for r in rows]

    def model(self, model_id: uuid.UUID) -> ModelRecord:
        with self.db() as session:
            row = session.get(InferenceModel, model_id)
        if row is None:
            raise NotFound(f"no model with id {model_id}")
        return ModelRecord.model_validate(row)

    def model_named(self, owner_id: uuid.UUID | None, name: str) -> ModelRecord | None:
        with self.db() as session:
            row = session.scalars(
                select(InferenceModel).where(
                    InferenceModel.owner_id == owner_id, InferenceModel.name == name
                )
            ).first()
        return None if row is None else ModelRecord.model_validate(row)

    def delete_model(self, model_id: uuid.UUID) -> None:
        with transaction(self.db) as session:
            session.execute(delete(InferenceModel).where(InferenceModel.id == model_id))

    # external services --------------------------------------------------------------

    def add_service(
        self,
        *,
        owner_id: uuid.UUID | None,
        name: str,
        base_url: str,
        secret_sealed: str,
        description: str | None,
        mpp: float | None,
        output: dict[str, Any],
        params_schema: dict[str, Any] | None,
    ) -> ServiceRecord:
        now = utcnow()
        row = InferenceService(
            id=uuid.uuid4(),
            owner_id=owner_id,
            name=name,
            description=description,
            base_url=base_url,
            secret_sealed=secret_sealed,
            mpp=mpp,
            output=output,
            params_schema=params_schema,
            created_at=now,
            updated_at=now,
        )
        insert_unique(self.db, row, f"a service named {name!r} exists already")
        return ServiceRecord.model_validate(row)

    def services(self) -> list[ServiceRecord]:
        with self.db() as session:
            rows = session.scalars(select(InferenceService).order_by(InferenceService.name))
            return [ServiceRecord.model_validate(r) for r in rows]

    def service(self, service_id: uuid.UUID) -> ServiceRecord:
        with self.db() as session:
            row = session.get(InferenceService, service_id)
        if row is None:
            raise NotFound(f"no inference service with id {service_id}")
        return ServiceRecord.model_validate(row)

    def service_named(self, name: str) -> ServiceRecord | None:
        with self.db() as session:
            row = session.scalars(
                select(InferenceService).where(InferenceService.name == name)
            ).first()
        return None if row is None else ServiceRecord.model_validate(row)

    def sealed_secret(self, service_id: uuid.UUID) -> str:
        with self.db() as session:
            sealed = session.scalar(
                select(InferenceService.secret_sealed).where(InferenceService.id == service_id)
            )
        if sealed is None:
            raise NotFound(f"no inference service with id {service_id}")
        return sealed

    def delete_service(self, service_id: uuid.UUID) -> None:
        """Remove a service; Conflict while tasks of it are unfinished (their callbacks
        could no longer be checked)."""
        with transaction(self.db) as session:
            active = session.scalar(
                select(func.count())
                .select_from(InferenceTask)
                .join(Job, Job.id == InferenceTask.id)
                .where(InferenceTask.model_id == service_id, Job.status.not_in(list(TERMINAL)))
            )
            if active:
                raise Conflict(f"{active} tasks of this service are unfinished; cancel them first")
            session.execute(delete(InferenceService).where(InferenceService.id == service_id))

    # tasks ----------------------------------------------------------------------------

    def add_task(
        self,
        task_id: uuid.UUID,
        *,
        owner_id: uuid.UUID | None,
        slide_id: uuid.UUID,
        model_kind: str,
        model_name: str,
        model_id: uuid.UUID | None,
    ) -> TaskRecord:
        row = InferenceTask(
            id=task_id,
            owner_id=owner_id,
            slide_id=slide_id,
            model_kind=model_kind,
            model_name=model_name,
            model_id=model_id,
            created_at=utcnow(),
        )
        with transaction(self.db) as session:
            session.add(row)
        return TaskRecord.model_validate(row)

    def task(self, task_id: uuid.UUID) -> TaskRecord:
        with self.db() as session:
            row = session.get(InferenceTask, task_id)
        if row is None:
            raise NotFound(f"no inference task with id {task_id}")
        return TaskRecord.model_validate(row)

    def find_tasks(
        self, f: TaskFilter, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[tuple[TaskRecord, JobRecord]], int]:
        """Tasks with their jobs, newest first, and how many match in all."""
        query = select(InferenceTask, Job).join(Job, Job.id == InferenceTask.id)
        if not f.all_owners:
            query = query.where(
                InferenceTask.owner_id.is_(None)
                if f.owner_id is None
                else InferenceTask.owner_id == f.owner_id
            )
        if f.slide_id is not None:
            query = query.where(InferenceTask.slide_id == f.slide_id)
        if f.model is not None:
            query = query.where(InferenceTask.model_name == f.model)
        if f.status is not None:
            query = query.where(Job.status == f.status)
        with self.db() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.execute(
                query.order_by(InferenceTask.created_at.desc(), InferenceTask.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return [
                (TaskRecord.model_validate(t), JobRecord.model_validate(j)) for t, j in rows
            ], int(total)

    def latest_succeeded(self, slide_id: uuid.UUID) -> TaskRecord | None:
        """The slide's most recently finished successful task."""
        with self.db() as session:
            row = session.scalars(
                select(InferenceTask)
                .join(Job, Job.id == InferenceTask.id)
                .where(InferenceTask.slide_id == slide_id, Job.status == Status.succeeded)
                .order_by(Job.finished_at.desc(), InferenceTask.created_at.desc())
            ).first()
        return None if row is None else TaskRecord.model_validate(row)

    def tasks_of_slide(self, slide_id: uuid.UUID) -> list[TaskRecord]:
        with self.db() as session:
            rows = session.scalars(select(InferenceTask).where(InferenceTask.slide_id == slide_id))
            return [TaskRecord.model_validate(r) for r in rows]

    def artefact_ids(self, task_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Files the tasks' jobs (and their region children) made, not yet deleted."""
        if not task_ids:
            return []
        ids = list(task_ids)
        children = select(Job.id).where(Job.parent_id.in_(ids))
        with self.db() as session:
            return list(
                session.scalars(
                    select(File.id).where(
                        File.deleted_at.is_(None),
                        File.source_job_id.in_(ids) | File.source_job_id.in_(children),
                    )
                )
            )

    def delete_tasks(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Forget tasks (their jobs stay, as every job's history does)."""
        if task_ids:
            with transaction(self.db) as session:
                session.execute(delete(InferenceTask).where(InferenceTask.id.in_(list(task_ids))))

    # webhook callbacks ----------------------------------------------------------------

    def has_callback(self, task_id: uuid.UUID, event_id: str) -> bool:
        with self.db() as session:
            found = session.scalar(
                select(InferenceCallback.id).where(
                    InferenceCallback.task_id == task_id, InferenceCallback.event_id == event_id
                )
            )
        return found is not None

    def add_callback(
        self,
        task_id: uuid.UUID,
        *,
        owner_id: uuid.UUID | None,
        event_id: str,
        status: str,
        progress: float | None = None,
        message: str | None = None,
        predictions_key: str | None = None,
        predictions_url: str | None = None,
    ) -> bool:
        """Record an event; False (and nothing recorded) when `event_id` was seen before."""
        row = InferenceCallback(
            task_id=task_id,
            owner_id=owner_id,
            event_id=event_id,
            status=status,
            progress=progress,
            message=message,
            predictions_key=predictions_key,
            predictions_url=predictions_url,
            received_at=utcnow(),
        )
        try:
            with transaction(self.db) as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    def callbacks_after(self, task_id: uuid.UUID, after_id: int = 0) -> list[CallbackRecord]:
        """The task's events after `after_id`, in arrival order."""
        with self.db() as session:
            rows = session.scalars(
                select(InferenceCallback)
                .where(InferenceCallback.task_id == task_id, InferenceCallback.id > after_id)
                .order_by(InferenceCallback.id)
            )
            return [CallbackRecord.model_validate(r) for r in rows]
