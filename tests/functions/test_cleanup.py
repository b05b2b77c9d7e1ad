"""Capability `cleanup` on the directory store and on real S3 (SeaweedFS): stale multipart
uploads aborted and their rows marked, deleted files' objects and rows purged, expired
tmp/ objects deleted, fresh things kept; a second pass finds nothing; concurrent passes
neither fail nor count a row twice; the capability is for schedules and admins; and the
`aperture cleanup` command prints the report."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from common.capabilities import get_capability
from common.jobs.runner import run_job
from common.jobs.status import Status
from common.objects.base import MultipartUpload
from common.records import File, User, migrate, transaction
from common.records.models import Upload
from common.records.types import utcnow
from common.runtime import Runtime
from functions.cleanup import CleanupReport, run_cleanup
from tests.support.app import make_settings
from tests.support.s3 import S3Server, empty_and_remove_bucket, unique_bucket

AGE_S = 3600


@pytest.fixture(params=["dir", "s3"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    overrides: dict[str, Any] = {}
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        overrides = {
            "object_store": "s3",
            "s3_endpoint_url": server.endpoint,
            "s3_bucket": unique_bucket(),
            "s3_region": server.region,
            "s3_path_style": True,
            "s3_access_key_id": server.access_key,
            "s3_secret_access_key": server.secret_key,
        }
    runtime = Runtime.from_settings(make_settings(tmp_path / "data", **overrides))
    migrate(runtime.engine)
    if request.param == "s3":
        runtime.objects.ensure_bucket()
    try:
        yield runtime
    finally:
        if request.param == "s3":
            empty_and_remove_bucket(runtime.objects)
        runtime.close()


def _key(name: str) -> str:
    return f"users/{uuid.uuid4()}/files/{uuid.uuid4()}/{name}"


def _start_upload(runtime: Runtime, *, row: bool = True, part: bool = True) -> str:
    """A multipart upload in the store (with one part), and its `uploads` row."""
    key = _key("big.tif")
    upload_id = runtime.objects.create_multipart(key)
    if part:
        runtime.objects.upload_part(key, upload_id, 1, b"p" * 1000)
    if row:
        now = utcnow()
        with transaction(runtime.db) as session:
            session.add(
                Upload(
                    id=uuid.uuid4(),
                    owner_id=None,
                    name="big.tif",
                    size=1000,
                    file_id=uuid.uuid4(),
                    key=key,
                    store_upload_id=upload_id,
                    part_size=1000,
                    part_count=1,
                    status="open",
                    created_at=now,
                    updated_at=now,
                )
            )
    return upload_id


def _listed(runtime: Runtime) -> dict[str, MultipartUpload]:
    return {u.upload_id: u for u in runtime.objects.list_multipart_uploads("")}


def _date_rows_as_listed(runtime: Runtime) -> None:
    """Rows take the store's initiation times, so both clocks agree in the test."""
    with transaction(runtime.db) as session:
        for upload in _listed(runtime).values():
            session.execute(
                update(Upload)
                .where(Upload.store_upload_id == upload.upload_id)
                .values(created_at=upload.initiated)
            )


def _row_status(runtime: Runtime, upload_id: str) -> str:
    with runtime.db() as session:
        status = session.scalar(select(Upload.status).where(Upload.store_upload_id == upload_id))
    return str(status)


def _deleted_file(runtime: Runtime, name: str = "gone.txt") -> tuple[uuid.UUID, str]:
    stored = runtime.files.add(b"bytes of " + name.encode(), name=name, owner_id=None)
    with transaction(runtime.db) as session:
        session.execute(update(File).where(File.id == stored.id).values(deleted_at=utcnow()))
    return stored.id, stored.key


def _file_rows(runtime: Runtime, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    with runtime.db() as session:
        return set(session.scalars(select(File.id).where(File.id.in_(ids))))


def _tmp_time(runtime: Runtime, key: str) -> datetime:
    return runtime.objects.head(key).last_modified  # type: ignore[no-any-return]


def test_a_pass_removes_what_is_stale_and_keeps_the_rest(runtime: Runtime) -> None:
    objects = runtime.objects
    stale = _start_upload(runtime)
    orphan = _start_upload(runtime, row=False)  # in the store only
    lost = _start_upload(runtime, part=False)  # its row stays open after the store lost it
    old_tmp = ["tmp/jobs/1/scratch.bin", "tmp/export.zip"]
    for key in old_tmp:
        objects.put_bytes(key, b"old")
    objects.put_bytes("users/keep/old.bin", b"not temporary")
    time.sleep(1.2)  # S3 dates have one-second resolution
    fresh = _start_upload(runtime)
    objects.put_bytes("tmp/new.bin", b"new")
    _date_rows_as_listed(runtime)
    listed = _listed(runtime)
    objects.abort_multipart(listed[lost].key, lost)

    gone_id, gone_key = _deleted_file(runtime)
    half_id, half_key = _deleted_file(runtime, "half.txt")
    objects.delete(half_key)  # a pass that crashed after deleting the object
    live = runtime.files.add(b"live", name="live.txt", owner_id=None)

    old_times = [
        listed[stale].initiated,
        listed[orphan].initiated,
        *(_tmp_time(runtime, key) for key in old_tmp),
    ]
    new_times = [listed[fresh].initiated, _tmp_time(runtime, "tmp/new.bin")]
    assert max(old_times) < min(new_times)
    middle = max(old_times) + (min(new_times) - max(old_times)) / 2
    now = middle + timedelta(seconds=AGE_S)

    report = run_cleanup(runtime, now=now, upload_expiry_s=AGE_S, tmp_ttl_s=AGE_S)

    assert report == CleanupReport(
        multipart_aborted=2, uploads_marked_aborted=2, files_purged=2, tmp_deleted=2, errors=0
    )
    assert set(_listed(runtime)) == {fresh}
    assert [_row_status(runtime, u) for u in (stale, lost, fresh)] == ["aborted", "aborted", "open"]
    assert not objects.exists(gone_key)
    assert _file_rows(runtime, [gone_id, half_id, live.id]) == {live.id}
    assert objects.get_bytes(live.key) == b"live"
    assert [o.key for o in objects.iter_objects("tmp/")] == ["tmp/new.bin"]
    assert objects.exists("users/keep/old.bin")

    again = run_cleanup(runtime, now=now, upload_expiry_s=AGE_S, tmp_ttl_s=AGE_S)
    assert again == CleanupReport()


def test_concurrent_passes_do_not_fail_or_double_count_rows(runtime: Runtime) -> None:
    uploads = [_start_upload(runtime) for _ in range(4)]
    files = [_deleted_file(runtime, f"f{i}.txt")[0] for i in range(12)]
    for i in range(4):
        runtime.objects.put_bytes(f"tmp/t{i}.bin", b"t")
    now = datetime.now(UTC) + timedelta(days=30)
    reports: list[CleanupReport] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def one_pass() -> None:
        try:
            start.wait()
            reports.append(run_cleanup(runtime, now=now))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [] and len(reports) == 2
    assert sum(r.errors for r in reports) == 0
    assert sum(r.files_purged for r in reports) == len(files)  # each row by one pass
    assert sum(r.uploads_marked_aborted for r in reports) == len(uploads)
    # Store deletes do not say whether they found anything: each pass counts at most all.
    assert all(r.multipart_aborted <= len(uploads) and r.tmp_deleted <= 4 for r in reports)
    assert sum(r.multipart_aborted for r in reports) >= len(uploads)
    assert _listed(runtime) == {} and list(runtime.objects.iter_objects("tmp/")) == []
    assert _file_rows(runtime, files) == set()
    assert run_cleanup(runtime, now=now) == CleanupReport()


def test_ages_shorter_than_a_minute_are_refused(runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="upload_expiry_s must be at least 60"):
        run_cleanup(runtime, upload_expiry_s=0)


@pytest.fixture
def dir_runtime(tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime.from_settings(make_settings(tmp_path / "data"))
    migrate(runtime.engine)
    try:
        yield runtime
    finally:
        runtime.close()


def _user(runtime: Runtime, role: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    with transaction(runtime.db) as session:
        session.add(User(id=user_id, email=f"{user_id}@example.org", role=role))
    return user_id


def test_the_capability_runs_for_schedules_and_admins_only(dir_runtime: Runtime) -> None:
    runtime = dir_runtime
    assert "upload_expiry_s" in get_capability("cleanup").params_schema()["properties"]
    file_id, _ = _deleted_file(runtime)
    outcomes = {}
    for who, owner in (
        ("user", _user(runtime, "user")),
        ("schedule", None),
        ("admin", _user(runtime, "admin")),
    ):
        job = runtime.jobs.create(function="cleanup", params={}, executor="local", owner_id=owner)
        run_job(job.id, runtime)
        outcomes[who] = runtime.jobs.get(job.id)
    assert outcomes["user"].status is Status.failed
    assert outcomes["user"].error is not None and outcomes["user"].error.type == "forbidden"
    assert outcomes["schedule"].status is Status.succeeded
    assert outcomes["schedule"].result == {**CleanupReport().model_dump(), "files_purged": 1}
    assert outcomes["admin"].status is Status.succeeded
    assert _file_rows(runtime, [file_id]) == set()


def test_the_cli_prints_the_report(
    dir_runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.cli import main

    _deleted_file(dir_runtime)
    monkeypatch.setenv("APERTURE_DATA_DIR", str(dir_runtime.settings.data_dir))
    assert main(["cleanup", "--tmp-ttl-s", "120"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {**CleanupReport().model_dump(), "files_purged": 1}
