"""The Aperture Python client: typed, sync (`Client`) and async (`AsyncClient`) from one
implementation over httpx. It imports nothing from the server's packages.

    from client import Client, ApiKey
    with Client("https://aperture.example", ApiKey("ak_...")) as aperture:
        uploaded = aperture.upload("plate1.nd2")
        job = aperture.run("metadata", {"file_id": uploaded.file.id})
"""

from client.api import AsyncClient
from client.auth import (
    Anonymous,
    ApiKey,
    BearerToken,
    Credential,
    PasswordLogin,
    SupabaseLogin,
    Tokens,
)
from client.errors import (
    ApertureError,
    BadRequest,
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidInput,
    JobFailed,
    NotFound,
    NotSignedIn,
    ParamsInvalid,
    ProblemError,
    RateLimited,
    ServerError,
    TooLarge,
    Unauthorized,
    UnsupportedFile,
)
from client.models import FileInfo, Function, Job, JobError, JobEvent, Page, UploadResult
from client.sync import Client

__all__ = [
    "Anonymous",
    "ApertureError",
    "ApiKey",
    "AsyncClient",
    "BadRequest",
    "BearerToken",
    "Client",
    "Conflict",
    "Credential",
    "FileInfo",
    "Forbidden",
    "Function",
    "IntegrityError",
    "InvalidInput",
    "Job",
    "JobError",
    "JobEvent",
    "JobFailed",
    "NotFound",
    "NotSignedIn",
    "Page",
    "ParamsInvalid",
    "PasswordLogin",
    "ProblemError",
    "RateLimited",
    "ServerError",
    "SupabaseLogin",
    "Tokens",
    "TooLarge",
    "Unauthorized",
    "UnsupportedFile",
    "UploadResult",
]
