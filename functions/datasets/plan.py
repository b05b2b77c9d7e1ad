"""Planning a build against records, once: which files are sources and what each is,
its split, and what labels it (an inference task's objects, a workflow's results).

Run at submit by the API (so bad input is a 422 before a job exists) and by the job
itself when it was submitted without a plan (POST /jobs). Every refusal is
InvalidInput naming the file, task or value at fault.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Literal

from sqlalchemy import select

from common.errors import InvalidInput, NotFound, UnsupportedFile
from common.runtime import Runtime
from functions.datasets.params import BuildParams, Source

SPLITS: tuple[Literal["train", "validation", "test"], ...] = ("train", "validation", "test")
#: Kinds of files builds and workflows make: never sources themselves.
DERIVED_KINDS = {"dataset-shard", "dataset-manifest", "dataset-summary", "dataset-part"}


Split = Literal["train", "validation", "test"]


def assign_splits(
    file_ids: list[uuid.UUID], ratios: tuple[float, float, float], seed: int
) -> dict[uuid.UUID, Split]:
    """Each source file's split: files ordered by a seeded hash of their ids, then the
    first round(n * train) train, the next round(n * validation) validation, the rest
    test. The same files, ratios and seed always give the same split."""
    order = sorted(file_ids, key=lambda f: hashlib.sha256(f"{seed}:{f}".encode()).hexdigest())
    n = len(order)
    n_train = min(n, round(n * ratios[0]))
    n_val = min(n - n_train, round(n * ratios[1]))
    if ratios[2] == 0:
        n_val = n - n_train if ratios[1] > 0 else 0
        n_train = n - n_val
    out: dict[uuid.UUID, Split] = {}
    for i, f in enumerate(order):
        out[f] = "train" if i < n_train else "validation" if i < n_train + n_val else "test"
    return out


def _source_files(runtime: Runtime, params: BuildParams) -> list[tuple[Any, bool]]:
    """(stored file, named explicitly) of each candidate source."""
    if params.source_ids is not None:
        return [(runtime.files.get(f), True) for f in dict.fromkeys(params.source_ids)]
    out, offset = [], 0
    while True:
        rows, total = runtime.datasets.files(params.dataset_id, limit=500, offset=offset)
        out += [(runtime.files.get(r.id), False) for r in rows if r.kind not in DERIVED_KINDS]
        offset += len(rows)
        if offset >= total or not rows:
            return out


def _owned_dataset(runtime: Runtime, dataset_id: uuid.UUID, owner_id: uuid.UUID | None) -> None:
    if runtime.datasets.get(dataset_id).owner_id != owner_id:
        raise NotFound(f"no dataset with id {dataset_id}")


def plan_build(runtime: Runtime, owner_id: uuid.UUID | None, params: BuildParams) -> BuildParams:
    """`params` with `planned` filled in (see the module docstring)."""
    from functions.metadata import describe_stored

    _owned_dataset(runtime, params.dataset_id, owner_id)
    if params.target_dataset_id is not None:
        _owned_dataset(runtime, params.target_dataset_id, owner_id)
    slides: list[tuple[Any, float]] = []
    timelapses: list[Any] = []
    for stored, explicit in _source_files(runtime, params):
        if explicit and stored.owner_id != owner_id:
            raise NotFound(f"no file with id {stored.id}")
        try:
            described = describe_stored(runtime.objects, stored)
        except UnsupportedFile as error:
            if explicit:
                raise InvalidInput(f"source {stored.name}: {error.message}") from error
            continue
        if described.kind == "slide" and params.patches is not None:
            slides.append((stored, _slide_mpp(stored.name, described.metadata, params)))
        elif described.kind == "microscopy" and params.crops is not None:
            timelapses.append(stored)
        elif explicit:
            wanted = "patches" if described.kind == "slide" else "crops"
            raise InvalidInput(f"source {stored.name} is a {described.kind} file: give `{wanted}`")
    if not slides and not timelapses:
        raise InvalidInput(
            "the build has no sources: no slides (for patches) or time-lapses (for crops)"
        )
    objects = _labels_from(runtime, owner_id, params, [s for s, _ in slides])
    workflows = _workflows(runtime, owner_id, params, timelapses)
    ids = [s.id for s, _ in slides] + [t.id for t in timelapses]
    split = params.split
    splits = assign_splits(ids, (split.train, split.validation, split.test), split.seed)
    planned = [
        Source(
            file_id=s.id,
            name=s.name,
            kind="slide",
            split=splits[s.id],
            mpp=mpp,
            objects_file_id=objects.get(s.id),
        )
        for s, mpp in slides
    ] + [
        Source(
            file_id=t.id,
            name=t.name,
            kind="timelapse",
            split=splits[t.id],
            workflow_id=workflows[t.id][0],
            fovs=workflows[t.id][1],
        )
        for t in timelapses
    ]
    if params.patches is not None and params.patches.labels_file_id is not None:
        runtime.files.get(params.patches.labels_file_id, owner_id=owner_id)
    return params.model_copy(update={"planned": planned})


def _slide_mpp(name: str, metadata: dict[str, Any], params: BuildParams) -> float:
    spec = params.patches
    if spec is None:
        raise InvalidInput(f"slide {name} is a source: give `patches`")
    mpp = metadata.get("mpp_x") or metadata.get("mpp_y")
    if not mpp:
        raise InvalidInput(f"slide {name} records no µm per pixel: patches need it")
    if spec.mpp < float(mpp) * 0.999:
        raise InvalidInput(
            f"resolution {spec.mpp} µm/px is finer than slide {name}'s {float(mpp):.4g} µm/px"
        )
    extent = spec.size * spec.mpp / float(mpp)
    if extent > min(metadata["width"], metadata["height"]):
        raise InvalidInput(
            f"a {spec.size} px patch at {spec.mpp} µm/px ({extent:.0f} level-0 px) is larger "
            f"than slide {name} ({metadata['width']} x {metadata['height']})"
        )
    return float(mpp)


def _finished_job(
    runtime: Runtime, owner_id: uuid.UUID | None, job_id: uuid.UUID, function: str, what: str
) -> Any:
    try:
        job = runtime.jobs.get(job_id)
    except NotFound:
        job = None
    if job is None or job.owner_id != owner_id:
        raise InvalidInput(f"{what} {job_id} is not one of your jobs")
    if job.function != function:
        raise InvalidInput(f"{what} {job_id} is a {job.function!r} job, not {function!r}")
    if job.status.value != "succeeded" or not job.result:
        raise InvalidInput(f"{what} {job_id} has no results ({job.status.value})")
    return job


def _labels_from(
    runtime: Runtime, owner_id: uuid.UUID | None, params: BuildParams, slides: list[Any]
) -> dict[uuid.UUID, uuid.UUID]:
    """Each slide's objects Parquet from the `labels_from` tasks (one per slide)."""
    if params.patches is None or not params.patches.labels_from:
        return {}
    names = {s.id: s.name for s in slides}
    found: dict[uuid.UUID, uuid.UUID] = {}
    for task_id in params.patches.labels_from:
        job = _finished_job(runtime, owner_id, task_id, "inference.slide", "labels_from task")
        slide = uuid.UUID(str(job.params["file_id"]))
        if slide not in names:
            raise InvalidInput(
                f"labels_from task {task_id} ran on another slide ({slide}), "
                "not a source of this build"
            )
        found[slide] = uuid.UUID(str(job.result["parquet_file_id"]))
    missing = [names[s] for s in names if s not in found]
    if missing:
        raise InvalidInput(f"slides without a labels_from task: {', '.join(missing[:5])}")
    return found


def _workflows(
    runtime: Runtime, owner_id: uuid.UUID | None, params: BuildParams, timelapses: list[Any]
) -> dict[uuid.UUID, tuple[uuid.UUID, list[dict[str, Any]]]]:
    """Each time-lapse's workflow and its FOVs with traces and a label stack."""
    if not timelapses:
        return {}
    if params.crops is None:
        raise InvalidInput("time-lapses are sources: give `crops`")
    by_file: dict[uuid.UUID, Any] = {}
    for job_id in params.crops.workflows:
        job = _finished_job(runtime, owner_id, job_id, "workflow", "workflow")
        by_file.setdefault(uuid.UUID(str(job.params["file_id"])), job)
    for t in timelapses:
        if t.id not in by_file and (job := _newest_workflow(runtime, owner_id, t.id)) is not None:
            by_file[t.id] = job
    out = {}
    for t in timelapses:
        job = by_file.get(t.id)
        fovs = [
            {"fov": o["fov"], "traces": o["traces_parquet"], "labels": o["labels"]}
            for o in (job.result.get("fovs", []) if job else [])
            if o.get("status") == "succeeded" and o.get("traces_parquet") and o.get("labels")
        ]
        if job is None or not fovs:
            raise InvalidInput(
                f"time-lapse {t.name} has no workflow results: run the workflow first"
            )
        out[t.id] = (job.id, fovs)
    return out


def _newest_workflow(runtime: Runtime, owner_id: uuid.UUID | None, file_id: uuid.UUID) -> Any:
    from common.jobs.models import JobRecord
    from common.records import Job

    with runtime.db() as session:
        rows = session.scalars(
            select(Job)
            .where(Job.owner_id == owner_id, Job.function == "workflow", Job.status == "succeeded")
            .order_by(Job.created_at.desc())
        ).all()
        for row in rows:
            if str((row.params or {}).get("file_id")) == str(file_id):
                return JobRecord.model_validate(row)
    return None
