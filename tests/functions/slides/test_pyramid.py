"""dzsave pyramids: one job and banded fan-out give the same tiles; the capability."""

from __future__ import annotations

import filecmp
import hashlib
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any, Literal

import pytest
from pydantic import BaseModel

from common.capabilities import ChildOutcome, StoredFile, get_capability, load_capabilities
from common.errors import ApertureError, JobCancelled
from common.objects import ObjectStore
from common.objects.directory import DirectoryStore
from common.settings import Settings
from functions.slides.geometry import DeepZoomGeometry
from functions.slides.pyramid import (
    NAME,
    PyramidOptions,
    build_band,
    build_lower_levels,
    build_pyramid,
    halve,
    open_level0,
    plan_bands,
)


def files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("options", "rows"), [(PyramidOptions(), 2), (PyramidOptions(tile_size=256, overlap=0), 3)]
)
def test_banded_pyramid_equals_single_job_tile_for_tile(
    synthetic: Path, tmp_path: Path, options: PyramidOptions, rows: int
) -> None:
    image = open_level0(synthetic, tmp_path)
    build_pyramid(image, tmp_path / "single", options)
    bands = plan_bands(image, options, rows)
    assert len(bands) >= 2
    for band in reversed(bands):  # order must not matter
        build_band(image, tmp_path / "banded", options, band)
    build_lower_levels(image, tmp_path / "banded", options)
    single, banded = files(tmp_path / "single"), files(tmp_path / "banded")
    assert single == banded
    different = [
        f
        for f in single
        if not filecmp.cmp(tmp_path / "single" / f, tmp_path / "banded" / f, False)
    ]
    assert different == []
    geometry = DeepZoomGeometry(
        [(image.width, image.height)], [1.0], tile_size=options.tile_size, overlap=options.overlap
    )
    tiles = [f for f in single if f.suffix == ".jpeg"]
    assert len(tiles) == geometry.tile_count


def test_halve_is_dzsave_next_level(boxes: Path, tmp_path: Path) -> None:
    import pyvips

    image = pyvips.Image.new_from_file(str(boxes))
    half = halve(image, tmp_path / "half.raw", strip=64)
    assert (half.width, half.height) == (150, 125)
    # 300 x 250 -> the 2 x 2 mean rounded half up
    block = image.crop(0, 0, 2, 2).numpy().astype(int).sum(axis=(0, 1))
    assert list(half.crop(0, 0, 1, 1).numpy().reshape(-1)) == list((block + 2) // 4)


def test_cancellation_stops_dzsave(synthetic: Path, tmp_path: Path) -> None:
    image = open_level0(synthetic, tmp_path)
    with pytest.raises(JobCancelled):
        build_pyramid(image, tmp_path / "out", PyramidOptions(), cancelled=lambda: True)


class InlineContext:
    """Runs a capability in this process against a real directory store; children run
    when spawned. Only what `tiles.pyramid` uses."""

    device: Literal["cpu", "gpu"] = "cpu"

    def __init__(
        self,
        store: ObjectStore,
        stored: StoredFile,
        *,
        cancel_after: int | None = None,
        executor: Literal["local", "modal"] = "local",
    ) -> None:
        self.job_id = uuid.uuid4()
        self.owner_id = stored.owner_id
        self._store = store
        self._stored = stored
        self._cancel_after = cancel_after
        self._executor = executor
        self.checks = 0
        self.progress_log: list[tuple[float, str]] = []
        self.outcomes: dict[uuid.UUID, ChildOutcome] = {}

    @property
    def objects(self) -> ObjectStore:
        return self._store

    @property
    def runtime(self) -> Any:
        """What `tiles.pyramid` reads of the runtime: its settings."""
        return SimpleNamespace(settings=Settings(executor=self._executor))

    def progress(self, fraction: float, message: str = "") -> None:
        self.progress_log.append((fraction, message))

    def log(self, message: str) -> None:
        self.progress_log.append((-1.0, message))

    def cancelled(self) -> bool:
        self.checks += 1
        return self._cancel_after is not None and self.checks > self._cancel_after

    def file(self, file_id: uuid.UUID) -> StoredFile:
        return self._stored

    def save_file(
        self,
        name: str,
        source: bytes | IO[bytes],
        *,
        content_type: str | None = None,
        kind: str | None = None,
    ) -> StoredFile:
        raise NotImplementedError

    def spawn(self, function: str, params: BaseModel | dict[str, Any]) -> uuid.UUID:
        capability = get_capability(function)
        child = InlineContext(self._store, self._stored, executor=self._executor)
        try:
            result = capability.run(capability.params.model_validate(params), child)
            outcome = ChildOutcome(
                job_id=child.job_id, status="succeeded", result=result.model_dump(mode="json")
            )
        except ApertureError as exc:
            outcome = ChildOutcome(
                job_id=child.job_id, status="failed", error={"message": exc.message}
            )
        self.outcomes[child.job_id] = outcome
        return child.job_id

    def gather(self, job_ids: Sequence[uuid.UUID]) -> list[ChildOutcome]:
        return [self.outcomes[i] for i in job_ids]


@pytest.fixture
def stored_slide(synthetic: Path, tmp_path: Path) -> tuple[DirectoryStore, StoredFile]:
    store = DirectoryStore(tmp_path / "objects", public_url="http://test", signing_key=b"k")
    file_id = uuid.uuid4()
    key = f"users/u/files/{file_id}/synthetic.svs"
    info = store.put_file(key, synthetic)
    stored = StoredFile(id=file_id, owner_id=None, name="synthetic.svs", key=key, size=info.size)
    return store, stored


def run_pyramid(ctx: InlineContext, **params: Any) -> Any:
    load_capabilities()
    capability = get_capability("tiles.pyramid")
    return capability.run(capability.params.model_validate(params), ctx)


def stored_objects(store: ObjectStore, slide_id: uuid.UUID) -> dict[str, bytes]:
    prefix = f"slides/{slide_id}/dzi/"
    return {o.key[len(prefix) :]: store.get_bytes(o.key) for o in store.iter_objects(prefix)}


def test_capability_single_and_fan_out_store_the_same_objects(
    stored_slide: tuple[DirectoryStore, StoredFile],
) -> None:
    store, stored = stored_slide
    single_id, banded_id = uuid.uuid4(), uuid.uuid4()
    single = run_pyramid(InlineContext(store, stored), file_id=stored.id, slide_id=single_id)
    ctx = InlineContext(store, stored)
    banded = run_pyramid(ctx, file_id=stored.id, slide_id=banded_id, band_rows=2)
    assert single.bands == 1 and banded.bands == 3 and single.tiles == banded.tiles
    assert single.dzi_key == f"slides/{single_id}/dzi/{NAME}.dzi"
    objects = stored_objects(store, single_id)
    assert objects == stored_objects(store, banded_id)
    assert len(objects) == single.tiles + 1
    from functions.slides.capability import pyramid_dzi_key, pyramid_tile_key

    assert store.exists(pyramid_dzi_key(single_id))
    tile_key = pyramid_tile_key(single_id, single.levels - 1, 0, 0, "jpeg")
    tile = store.head(tile_key)
    assert tile.content_type == "image/jpeg"
    assert tile.etag == hashlib.md5(store.get_bytes(tile_key)).hexdigest()
    assert store.head(pyramid_dzi_key(single_id)).content_type == "application/xml"
    assert any("band" in message for _, message in ctx.progress_log)
    assert list((store.root / ".tmp").iterdir()) == []  # nothing left staged


@pytest.mark.parametrize(("executor", "bands"), [("local", 1), ("modal", 3)])
def test_capability_fans_out_big_slides_only_where_children_get_machines_of_their_own(
    stored_slide: tuple[DirectoryStore, StoredFile],
    monkeypatch: pytest.MonkeyPatch,
    executor: Literal["local", "modal"],
    bands: int,
) -> None:
    from functions.slides import capability

    store, stored = stored_slide
    monkeypatch.setattr(capability, "FAN_OUT_PIXELS", 1000 * 1000)  # the slide is bigger
    monkeypatch.setattr(capability, "AUTO_BAND_ROWS", 2)
    ctx = InlineContext(store, stored, executor=executor)
    result = run_pyramid(ctx, file_id=stored.id, slide_id=uuid.uuid4())
    assert result.bands == bands
    assert store.exists(result.dzi_key)


def test_capability_on_s3_uploads_what_the_directory_store_holds(
    stored_slide: tuple[DirectoryStore, StoredFile], s3_store: ObjectStore
) -> None:
    store, stored = stored_slide
    s3_store.put_bytes(stored.key, store.get_bytes(stored.key))
    dir_id, s3_id = uuid.uuid4(), uuid.uuid4()
    run_pyramid(InlineContext(store, stored), file_id=stored.id, slide_id=dir_id)
    result = run_pyramid(InlineContext(s3_store, stored), file_id=stored.id, slide_id=s3_id)
    assert stored_objects(s3_store, s3_id) == stored_objects(store, dir_id)
    tile_key = f"{result.prefix}/{NAME}_files/0/0_0.jpeg"
    assert s3_store.head(tile_key).content_type == "image/jpeg"


def test_capability_cancelled_leaves_nothing(
    stored_slide: tuple[DirectoryStore, StoredFile],
) -> None:
    store, stored = stored_slide
    slide_id = uuid.uuid4()
    with pytest.raises(JobCancelled):
        run_pyramid(
            InlineContext(store, stored, cancel_after=3), file_id=stored.id, slide_id=slide_id
        )
    assert list(store.iter_objects(f"slides/{slide_id}/")) == []
    assert list((store.root / ".tmp").iterdir()) == []  # the partial build is gone
