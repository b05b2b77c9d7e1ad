"""Capabilities `datasets.build` (plans, fans out one child per source file, assembles
shards, manifest and summary) and `datasets.build.part` (one source's samples).

A part writes its source's samples to one tar (a file of kind `dataset-part`, made by
the part's job); the parent copies them into the shards of each split and removes the
parts. Shards, manifest and summary join the dataset only when the build succeeds. A
cancelled or failed build removes every file its jobs stored, so no partial shard is
left; a source that cannot be read fails its part, and the build says which and why.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.capabilities import ChildOutcome, Context, Resources, capability
from common.errors import ApertureError, InvalidInput, JobCancelled
from common.objects.access import stored_path
from functions.datasets.params import BuildParams, BuildResult, PartParams, PartResult, Source

BUILD_RESOURCES = Resources(cpu=1, memory_mib=2048, timeout_s=12 * 3600)
PART_RESOURCES = Resources(cpu=1, memory_mib=4096, timeout_s=6 * 3600, retries=1)
KIND_SHARD, KIND_PART = "dataset-shard", "dataset-part"


@capability("datasets.build", params=BuildParams, result=BuildResult, resources=BUILD_RESOURCES)
def build_dataset(params: BuildParams, ctx: Context) -> BuildResult:
    """Build WebDataset shards from a dataset's slides and time-lapses, one part per file."""
    from functions.datasets.plan import plan_build

    if params.planned is None:  # submitted through POST /jobs: plan here, once
        params = plan_build(ctx.runtime, ctx.owner_id, params)
    sources = params.planned or []
    children: list[uuid.UUID] = []
    try:
        for i, source in enumerate(sources):
            if ctx.cancelled():
                break
            children.append(ctx.spawn("datasets.build.part", _part(params, source, i)))
        ctx.log(f"{len(children)} parts spawned")
        outcomes = _gather(ctx, sources, children)
        return _finish(params, ctx, sources, outcomes)
    except BaseException:
        _remove_made(ctx, children)
        raise


def _part(params: BuildParams, source: Source, index: int) -> PartParams:
    return PartParams(
        source=source,
        index=index,
        patches=params.patches if source.kind == "slide" else None,
        crops=params.crops if source.kind == "timelapse" else None,
        output=params.output,
    )


def _gather(ctx: Context, sources: list[Source], children: list[uuid.UUID]) -> list[ChildOutcome]:
    """Each part's outcome in source order, with progress per file and sample."""
    outcomes, samples = [], 0
    for i, job in enumerate(children):
        (outcome,) = ctx.gather([job])
        outcomes.append(outcome)
        samples += int((outcome.result or {}).get("samples", 0))
        ctx.progress(
            0.9 * (i + 1) / max(1, len(sources)),
            f"file {i + 1}/{len(sources)} ({sources[i].name}): {outcome.status}; {samples} samples",
        )
    if ctx.cancelled() or len(children) < len(sources):
        raise JobCancelled()
    return outcomes


def _remove_made(ctx: Context, children: list[uuid.UUID]) -> None:
    """Delete whatever this build and its parts stored (shards, parts, manifest)."""
    made = ctx.runtime.files.made_by([ctx.job_id, *children])
    if made:
        ctx.runtime.catalog.delete(made, ctx.objects)
        ctx.log(f"removed {len(made)} files of the unfinished build")


def _failures(sources: list[Source], outcomes: list[ChildOutcome]) -> list[dict[str, Any]]:
    return [
        {
            "file_id": str(s.file_id),
            "name": s.name,
            "status": o.status,
            "reason": (o.error or {}).get("message", o.status),
        }
        for s, o in zip(sources, outcomes, strict=True)
        if o.status != "succeeded"
    ]


def _finish(
    params: BuildParams, ctx: Context, sources: list[Source], outcomes: list[ChildOutcome]
) -> BuildResult:
    from functions.datasets.assemble import assemble, write_manifest

    failed = _failures(sources, outcomes)
    for f in failed:
        ctx.log(f"source {f['name']} failed: {f['reason']}")
    if len(failed) == len(sources):
        first = failed[0]
        error = f"every source failed ({len(failed)}); {first['name']}: {first['reason']}"
        raise ApertureError(error)
    with tempfile.TemporaryDirectory(prefix="aperture-build-") as tmp:
        parts = list(_download_parts(ctx, sources, outcomes, Path(tmp)))
        shard_ids: list[uuid.UUID] = []

        def save_shard(path: Path) -> None:
            with path.open("rb") as fh:
                saved = ctx.save_file(
                    f"{params.name}-{path.name}",
                    fh,
                    kind=KIND_SHARD,
                    content_type="application/x-tar",
                )
            shard_ids.append(saved.id)
            path.unlink()

        done = assemble(
            parts, params.output, Path(tmp), on_shard=save_shard, cancelled=ctx.cancelled
        )
        ctx.progress(0.97, f"{len(shard_ids)} shards; writing the manifest")
        csv_path, pq_path = write_manifest(done.rows, Path(tmp) / f"{params.name}-manifest")
        summary = {**done.summary, "failed_sources": failed}
        saved = _save_outputs(params, ctx, csv_path, pq_path, summary)
    target = _target_dataset(params, ctx)
    ctx.runtime.datasets.add_files(target, [*shard_ids, *saved])
    ctx.runtime.catalog.delete(
        [
            uuid.UUID(str(o.result["tar_file_id"]))
            for o in outcomes
            if o.result and o.result.get("tar_file_id")
        ],
        ctx.objects,
    )
    return BuildResult(
        dataset_id=target,
        samples=summary["samples"],
        summary=summary,
        shard_file_ids=shard_ids,
        manifest_csv_file_id=saved[0],
        manifest_parquet_file_id=saved[1],
        summary_file_id=saved[2],
        failed_sources=failed,
    )


def _target_dataset(params: BuildParams, ctx: Context) -> uuid.UUID:
    """Where the outputs go: a new dataset (made only now, when the build succeeded),
    the named target, or the source dataset."""
    if params.new_dataset_name is not None:
        made = ctx.runtime.datasets.create(
            owner_id=ctx.owner_id,
            name=params.new_dataset_name,
            description=f"Training data built by job {ctx.job_id} from dataset {params.dataset_id}",
        )
        return made.id
    return params.target_dataset_id or params.dataset_id


def _save_outputs(
    params: BuildParams, ctx: Context, csv_path: Path, pq_path: Path, summary: dict[str, Any]
) -> list[uuid.UUID]:
    import json

    ids = []
    for path, ctype in ((csv_path, "text/csv"), (pq_path, "application/vnd.apache.parquet")):
        with path.open("rb") as fh:
            ids.append(ctx.save_file(path.name, fh, kind="dataset-manifest", content_type=ctype).id)
    body = json.dumps(summary, indent=2, sort_keys=True).encode()
    ids.append(
        ctx.save_file(
            f"{params.name}-summary.json",
            body,
            kind="dataset-summary",
            content_type="application/json",
        ).id
    )
    return ids


def _download_parts(
    ctx: Context, sources: list[Source], outcomes: list[ChildOutcome], tmp: Path
) -> Iterator[tuple[Source, Path]]:
    for i, (source, outcome) in enumerate(zip(sources, outcomes, strict=True)):
        tar_id = (
            (outcome.result or {}).get("tar_file_id") if outcome.status == "succeeded" else None
        )
        if not tar_id:
            continue
        stored = ctx.file(uuid.UUID(str(tar_id)))
        path = tmp / f"part-{i}.tar"
        with path.open("wb") as out:
            for chunk in ctx.objects.iter_bytes(stored.key):
                out.write(chunk)
        yield source, path


@capability("datasets.build.part", params=PartParams, result=PartResult, resources=PART_RESOURCES)
def build_part(params: PartParams, ctx: Context) -> PartResult:
    """One source file of a `datasets.build`: its samples as one tar (a part)."""
    from functions.datasets.shards import TarSink

    started = time.monotonic()
    source = params.source
    stored = ctx.file(source.file_id)
    base = {
        "source_file_id": str(source.file_id),
        "source_name": source.name,
        "split": source.split,
    }
    with tempfile.TemporaryDirectory(prefix="aperture-part-") as tmp:
        out = Path(tmp) / f"part-{params.index:05d}.tar"
        with TarSink(out) as sink, stored_path(ctx.objects, stored.key, stored.name) as path:
            try:
                samples = _samples(params, ctx, path, sink, base, Path(tmp))
            except (JobCancelled, ApertureError):
                raise
            except Exception as error:  # an unreadable source fails its part, saying why
                raise InvalidInput(
                    f"{source.name} could not be read: {type(error).__name__}: {error}"
                ) from error
        with out.open("rb") as fh:
            saved = ctx.save_file(out.name, fh, kind=KIND_PART, content_type="application/x-tar")
    return PartResult(
        file_id=source.file_id,
        samples=samples,
        tar_file_id=saved.id,
        seconds=round(time.monotonic() - started, 3),
    )


def _samples(
    params: PartParams, ctx: Context, path: Path, sink: Any, base: dict[str, Any], tmp: Path
) -> int:
    from functions.datasets.crops import timelapse_samples
    from functions.datasets.slide_part import slide_samples

    prefix = f"s{params.index:05d}"
    if params.patches is not None:
        return slide_samples(
            path, params.patches, params.output, sink, prefix=prefix, base=base,
            labels=_slide_labels(params, ctx, tmp),
            progress=lambda d, n: ctx.progress(d / max(n, 1), f"{d}/{n} patches"),
            cancelled=ctx.cancelled,
        )  # fmt: skip
    if params.crops is None:
        raise InvalidInput(f"{params.source.name}: nothing to build (no patches or crops)")
    fovs = []
    for fov in params.source.fovs:
        traces, labels = tmp / f"fov-{fov['fov']}.parquet", tmp / f"fov-{fov['fov']}.tif"
        _download(ctx, fov["traces"], traces)
        _download(ctx, fov["labels"], labels)
        fovs.append((int(fov["fov"]), traces, labels))
    return timelapse_samples(
        path, fovs, params.crops, sink, prefix=prefix, base=base,
        progress=lambda d, n: ctx.progress(d / max(n, 1), f"{d}/{n} FOVs; {sink.samples} crops"),
        cancelled=ctx.cancelled,
    )  # fmt: skip


def _slide_labels(params: PartParams, ctx: Context, tmp: Path) -> Any:
    from functions.datasets.labels import Objects, Polygons

    spec = params.patches
    if spec is not None and params.source.objects_file_id is not None:
        path = tmp / "objects.parquet"
        _download(ctx, params.source.objects_file_id, path)
        return Objects.from_parquet(path)
    if spec is not None and spec.labels_file_id is not None:
        return Polygons.from_geojson(ctx.objects.get_bytes(ctx.file(spec.labels_file_id).key))
    return None


def _download(ctx: Context, file_id: Any, out: Path) -> None:
    stored = ctx.file(uuid.UUID(str(file_id)))
    with out.open("wb") as fh:
        for chunk in ctx.objects.iter_bytes(stored.key):
            fh.write(chunk)
