"""Object storage: one `ObjectStore` protocol, a directory backend and an S3 backend.

`make_store(settings)` picks the backend. boto3 is imported only when the S3 backend
is asked for, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.objects.base import (
    CHUNK_SIZE,
    MultipartUpload,
    ObjectInfo,
    ObjectPage,
    ObjectStore,
    PartInfo,
)
from common.objects.directory import DirectoryStore
from common.objects.keys import validate_key, validate_prefix

if TYPE_CHECKING:
    from common.settings import Settings

__all__ = [
    "CHUNK_SIZE",
    "DirectoryStore",
    "MultipartUpload",
    "ObjectInfo",
    "ObjectPage",
    "ObjectStore",
    "PartInfo",
    "make_store",
    "validate_key",
    "validate_prefix",
]


def make_store(settings: Settings) -> ObjectStore:
    """The object store the settings ask for (`APERTURE_OBJECT_STORE`)."""
    if settings.object_store == "s3":
        from common.objects.s3 import S3Store  # boto3 is heavy; only load it when used

        return S3Store.from_settings(settings)
    return DirectoryStore(
        settings.resolved_objects_dir,
        public_url=settings.public_url,
        signing_key=settings.signing_key,
    )
