"""The S3 backend, on boto3: AWS S3, Supabase Storage's S3 endpoint, MinIO, SeaweedFS, R2.

Signature v4 throughout (presigned URLs included), optional path-style addressing
for servers without virtual-host buckets, and checksums only where S3 requires
them: boto3's newer default CRC trailers and aws-chunked bodies are not understood
by every S3-compatible server. Streams go through boto3's managed transfers with a
bounded number of in-memory chunks; parts of unknown length are spooled (memory up
to a few MiB, then disk) because UploadPart needs a length.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from common.errors import InvalidInput, ObjectNotFound
from common.objects import readback, rules
from common.objects.base import (
    CHUNK_SIZE,
    ByteSource,
    MultipartUpload,
    ObjectInfo,
    ObjectPage,
    PartInfo,
)
from common.objects.disposition import content_disposition
from common.objects.keys import validate_key, validate_prefix
from common.objects.s3_multipart import S3Uploads
from common.objects.s3_support import (
    DEFAULT_CONTENT_TYPE,
    NOT_FOUND_CODES,
    check_expiry,
    error_code,
    translated,
)
from common.objects.streams import HashingReader, iter_chunks

if TYPE_CHECKING:
    from common.settings import Settings

_MIB = 1024 * 1024
#: Reads longer than this continue with parallel ranged GETs (`readback.prefetched`).
PARALLEL_READ_AFTER = 32 * _MIB


def _make_client(
    *,
    endpoint_url: str | None,
    region: str,
    path_style: bool,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> Any:
    config = Config(
        signature_version="s3v4",
        region_name=region,
        s3={"addressing_style": "path" if path_style else "auto"},
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=16,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A session of its own: boto3's default session is not thread-safe (clients are).
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=config,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
    )


def _transfer_config() -> TransferConfig:
    transfer = TransferConfig(
        multipart_threshold=8 * _MIB,
        multipart_chunksize=8 * _MIB,
        max_concurrency=4,
        use_threads=True,
        preferred_transfer_client="classic",
    )
    # Bounded memory for streams of unknown length: s3transfer reads at most this
    # many chunks ahead (boto3's constructor does not take it, the base class does).
    transfer.max_in_memory_upload_chunks = 2
    return transfer


class S3Store:
    """ObjectStore over one bucket of an S3-compatible service."""

    kind = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        path_style: bool = False,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket = bucket
        self._endpoint_url = endpoint_url
        self._region = region
        self.client = _make_client(
            endpoint_url=endpoint_url,
            region=region,
            path_style=path_style,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )
        self._transfer = _transfer_config()
        self._uploads = S3Uploads(self.client, bucket)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        secret = settings.s3_secret_access_key
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            path_style=settings.s3_path_style,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )

    def __repr__(self) -> str:
        where = self._endpoint_url or f"aws:{self._region}"
        return f"S3Store(bucket={self.bucket!r}, endpoint={where!r})"

    # bucket ----------------------------------------------------------------------

    def ping(self) -> None:
        """HeadBucket: the endpoint answers, the credentials work, the bucket exists."""
        with translated(""):
            self.client.head_bucket(Bucket=self.bucket)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet (development and tests)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as err:
            if error_code(err) not in NOT_FOUND_CODES | {"NoSuchBucket"}:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self._region != "us-east-1":  # us-east-1 refuses an explicit location
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as err:
            if error_code(err) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    # writes ----------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        with translated(key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=bytes(data),
                ContentMD5=_md5_b64(data),
                ContentType=content_type or DEFAULT_CONTENT_TYPE,
            )
        return replace(self.head(key), sha256=hashlib.sha256(data).hexdigest())

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        with translated(key):
            self.client.upload_file(
                str(path),
                self.bucket,
                key,
                Config=self._transfer,
                ExtraArgs={"ContentType": content_type or DEFAULT_CONTENT_TYPE},
            )
        return self.head(key)

    def put_stream(
        self, key: str, stream: ByteSource, *, content_type: str | None = None
    ) -> ObjectInfo:
        if isinstance(stream, bytes | bytearray | memoryview):
            return self.put_bytes(key, bytes(stream), content_type=content_type)
        validate_key(key)
        reader = HashingReader(iter_chunks(stream), sha256=True)
        with translated(key):
            self.client.upload_fileobj(
                reader,
                self.bucket,
                key,
                Config=self._transfer,
                ExtraArgs={"ContentType": content_type or DEFAULT_CONTENT_TYPE},
            )
        return replace(self.head(key), sha256=reader.sha256.hexdigest() if reader.sha256 else None)

    def copy(self, src: str, dst: str) -> ObjectInfo:
        source = self.head(src)
        validate_key(dst)
        copy_source = {"Bucket": self.bucket, "Key": src}
        with translated(src):
            if source.size > rules.MAX_SINGLE_PUT:  # CopyObject's limit: copy in parts
                self.client.copy(copy_source, self.bucket, dst, Config=self._transfer)
            else:
                self.client.copy_object(Bucket=self.bucket, Key=dst, CopySource=copy_source)
        return self.head(dst)

    def delete(self, key: str) -> None:
        validate_key(key)
        with translated(key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        if not validate_prefix(prefix):
            raise InvalidInput("refusing to delete with an empty prefix (the whole store)")
        deleted = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:  # at most 1000 keys a page, DeleteObjects' limit too
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if not keys:
                continue
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
            )
            if errors := response.get("Errors"):
                raise RuntimeError(
                    f"could not delete {len(errors)} objects under {prefix!r}: "
                    f"{errors[0].get('Key')}: {errors[0].get('Message')}"
                )
            deleted += len(keys)
        return deleted

    # reads -----------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        with translated(key):
            return _info(key, self.client.head_object(Bucket=self.bucket, Key=key))

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.iter_bytes(key, start=start, end=end))

    def local_path(self, key: str) -> Path | None:
        """None: S3 objects have no local file (read them with `RangedReader`)."""
        validate_key(key)
        return None

    def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        rules.check_range(start, end)
        validate_key(key)
        if end == start:  # an empty range cannot be expressed as a Range header
            self.head(key)
            return iter(())
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with translated(key):
            response = self.client.get_object(**kwargs)
        body, length = response["Body"], int(response["ContentLength"])
        if length <= PARALLEL_READ_AFTER:
            return _stream_body(body, chunk_size)
        # A long read: the rest with several ranged GETs in flight (one GET stream is
        # much slower than the server, as boto3's download_file knows).
        return readback.continued(body, chunk_size, self._range_reader(key), start, start + length)

    def _range_reader(self, key: str) -> Any:
        def fetch(start: int, stop: int) -> bytes:
            with translated(key):
                response = self.client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={start}-{stop - 1}"
                )
                data: bytes = response["Body"].read()
            if len(data) != stop - start:
                raise RuntimeError(f"{key}: got {len(data)} bytes of range {start}-{stop}")
            return data

        return fetch

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int = 1000
    ) -> ObjectPage:
        validate_prefix(prefix)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "MaxKeys": rules.check_limit(limit),
        }
        if start_after:
            kwargs["StartAfter"] = start_after
        with translated(prefix):
            response = self.client.list_objects_v2(**kwargs)
        items = [_listed(item) for item in response.get("Contents", [])]
        truncated = bool(response.get("IsTruncated")) and bool(items)
        return ObjectPage(items=items, next_token=items[-1].key if truncated else None)

    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        with translated(prefix):
            for page in pages:
                yield from (_listed(item) for item in page.get("Contents", []))

    # signed access ---------------------------------------------------------------

    def presigned_get_url(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": validate_key(key)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        return str(
            self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=check_expiry(expires_s)
            )
        )

    def presigned_put_url(self, key: str, *, expires_s: int) -> str:
        params = {"Bucket": self.bucket, "Key": validate_key(key)}
        return str(
            self.client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=check_expiry(expires_s)
            )
        )

    # multipart -----------------------------------------------------------------

    def create_multipart(self, key: str, *, content_type: str | None = None) -> str:
        return self._uploads.create(validate_key(key), content_type=content_type)

    def part_url(self, key: str, upload_id: str, part_number: int, *, expires_s: int) -> str:
        return self._uploads.part_url(
            validate_key(key), upload_id, part_number, expires_s=expires_s
        )

    def upload_part(
        self, key: str, upload_id: str, part_number: int, stream: ByteSource
    ) -> PartInfo:
        return self._uploads.upload_part(validate_key(key), upload_id, part_number, stream)

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        return self._uploads.list_parts(validate_key(key), upload_id)

    def complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> ObjectInfo:
        self._uploads.complete(validate_key(key), upload_id, parts)
        return self.head(key)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._uploads.abort(validate_key(key), upload_id)

    def list_multipart_uploads(self, prefix: str = "") -> Iterator[MultipartUpload]:
        return self._uploads.list(validate_prefix(prefix))


def _info(key: str, head: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=int(head["ContentLength"]),
        etag=rules.normalize_etag(head["ETag"]),
        last_modified=head["LastModified"],
        content_type=head.get("ContentType"),
    )


def _listed(item: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=item["Key"],
        size=int(item["Size"]),
        etag=rules.normalize_etag(item["ETag"]),
        last_modified=item["LastModified"],
    )


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


def _stream_body(body: Any, chunk_size: int) -> Iterator[bytes]:
    """Chunks of a GetObject body; the connection is released however iteration ends."""
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()
