"""Multipart uploads against an S3 bucket, smoothing over servers' differences.

AWS replaces a re-uploaded part and lists uploads by key; SeaweedFS keeps both
copies of a re-uploaded part (completing with whichever the ETag names) and lists
uploads unordered. Callers get AWS's view from either.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from common.objects import rules
from common.objects.base import CHUNK_SIZE, ByteSource, MultipartUpload, PartInfo
from common.objects.s3_support import (
    DEFAULT_CONTENT_TYPE,
    check_expiry,
    error_code,
    raise_translated,
    translated,
)
from common.objects.streams import HashingReader, iter_chunks

#: Spool a part of unknown length in memory up to this size, then on disk.
_SPOOL_IN_MEMORY = 8 * 1024 * 1024


class S3Uploads:
    """The multipart half of S3Store. Keys arrive already validated."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def __repr__(self) -> str:
        return f"S3Uploads(bucket={self._bucket!r})"

    def create(self, key: str, *, content_type: str | None) -> str:
        with translated(key):
            response = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, ContentType=content_type or DEFAULT_CONTENT_TYPE
            )
        return str(response["UploadId"])

    def part_url(self, key: str, upload_id: str, number: int, *, expires_s: int) -> str:
        params = {
            "Bucket": self._bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": rules.check_part_number(number),
        }
        return str(
            self._client.generate_presigned_url(
                "upload_part", Params=params, ExpiresIn=check_expiry(expires_s)
            )
        )

    def upload_part(self, key: str, upload_id: str, number: int, stream: ByteSource) -> PartInfo:
        """Spool the part (UploadPart needs its length and MD5 up front), then send it."""
        rules.check_part_number(number)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            reader = HashingReader(iter_chunks(stream))
            while chunk := reader.read(CHUNK_SIZE):
                spool.write(chunk)
            spool.seek(0)
            with translated(key):
                response = self._client.upload_part(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=spool,
                    ContentLength=reader.size,
                    ContentMD5=base64.b64encode(reader.md5.digest()).decode("ascii"),
                )
        return PartInfo(
            number=number, etag=rules.normalize_etag(response["ETag"]), size=reader.size
        )

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """Parts by number; of a part uploaded twice, only the later upload.

        AWS S3 replaces a re-sent part itself. SeaweedFS keeps every copy with a
        timestamp to the second, so two uploads of one part within the same second
        cannot be told apart here (completion with the client's ETags is unaffected)."""
        pages = self._client.get_paginator("list_parts").paginate(
            Bucket=self._bucket, Key=key, UploadId=upload_id
        )
        latest: dict[int, dict[str, Any]] = {}
        with translated(key):
            for part in (part for page in pages for part in page.get("Parts", [])):
                seen = latest.get(part["PartNumber"])
                if seen is None or part["LastModified"] > seen["LastModified"]:
                    latest[part["PartNumber"]] = part
        return [
            PartInfo(number=int(n), etag=rules.normalize_etag(p["ETag"]), size=int(p["Size"]))
            for n, p in sorted(latest.items())
        ]

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        wanted = rules.check_completion(parts)
        listed = [{"PartNumber": number, "ETag": f'"{etag}"'} for number, etag in wanted]
        with translated(key):
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
            )

    def abort(self, key: str, upload_id: str) -> None:
        """Idempotent, like delete: an unknown or finished upload is not an error."""
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except ClientError as err:
            if error_code(err) != "NoSuchUpload":
                raise_translated(err, key)

    def list(self, prefix: str) -> Iterator[MultipartUpload]:
        """Uploads in progress by key, then initiation time, as AWS lists them.

        Collected before sorting, because not every S3 server lists in that order.
        """
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self._bucket, Prefix=prefix
        )
        with translated(prefix):
            uploads = [
                MultipartUpload(key=u["Key"], upload_id=u["UploadId"], initiated=u["Initiated"])
                for page in pages
                for u in page.get("Uploads", [])
            ]
        uploads.sort(key=lambda upload: (upload.key, upload.initiated))
        return iter(uploads)
