"""Synthetic H&E slides with ground truth, and a real job pool to run capabilities in."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.capabilities import StoredFile
from common.executors.local import LocalExecutor
from common.jobs import JobRecord
from common.jobs.service import JobService
from common.records import migrate
from common.runtime import Runtime
from functions.inference.synthetic import write_he_slide
from tests.support.app import make_settings


@dataclass(frozen=True)
class Truth:
    centroids: np.ndarray  # (n, 2)
    radius: np.ndarray  # (n,) equivalent radius, px
    area_px: np.ndarray
    outlines: list[np.ndarray]
    meta: dict[str, Any]


def load_truth(path: Path) -> Truth:
    data = json.loads(path.read_text())
    nuclei = data.pop("nuclei")
    return Truth(
        centroids=np.array([n["centroid"] for n in nuclei]).reshape(-1, 2),
        radius=np.array([n["equivalent_radius_px"] for n in nuclei]),
        area_px=np.array([n["area_px"] for n in nuclei]),
        outlines=[np.array(n["outline"]) for n in nuclei],
        meta=data,
    )


@pytest.fixture(scope="session")
def he_slide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    """2,048 x 2,048 at 0.5 µm/px: 3 x 3 tiles of nuclei-he, about 1,900 nuclei."""
    path, truth = write_he_slide(
        tmp_path_factory.mktemp("he") / "he.svs", width=2048, height=2048, seed=1
    )
    return path, load_truth(truth)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobService]:
    """Two real worker processes on a real database and directory store."""
    runtime = Runtime.from_settings(
        make_settings(tmp_path_factory.mktemp("inference") / "data", workers=2)
    )
    migrate(runtime.engine)
    executor = LocalExecutor(runtime)
    executor.start()
    yield JobService(runtime, executor)
    executor.stop()
    runtime.close()


def store_file(pool: JobService, path: Path, name: str | None = None) -> StoredFile:
    with path.open("rb") as f:
        return pool.runtime.files.add(f, name=name or path.name, owner_id=None)  # type: ignore[no-any-return]


def run_job(
    pool: JobService, function: str, params: dict[str, Any], timeout: float = 240
) -> JobRecord:
    job = pool.submit(function, params, owner_id=None)
    deadline = time.monotonic() + timeout
    while not (found := pool.runtime.jobs.get(job.id)).status.terminal:
        if time.monotonic() > deadline:
            raise AssertionError(f"{function} still {found.status} after {timeout} s")
        time.sleep(0.1)
    return found


def file_bytes(pool: JobService, file_id: str | uuid.UUID) -> bytes:
    stored = pool.runtime.files.get(uuid.UUID(str(file_id)))
    return pool.runtime.objects.get_bytes(stored.key)  # type: ignore[no-any-return]
