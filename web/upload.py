"""Streaming `multipart/form-data` uploads: the file part's bytes go from the socket to the
object store chunk by chunk; the body is never held whole in memory or spooled to disk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import anyio.from_thread
import anyio.lowlevel
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from common.errors import ApertureError, InvalidInput, MalformedRequest, UnsupportedMediaType

#: Form fields other than the file are small labels; refuse anything bigger.
MAX_FIELD_BYTES = 64 * 1024


class ClientGone(ApertureError):
    """The client closed the connection before its body arrived: nobody reads the answer,
    so this is logged quietly (no traceback) and whatever was half-stored is dropped."""

    code = "client-disconnected"
    default_message = "the client disconnected before the request body was complete"


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str | None = None
    value: bytearray = field(default_factory=bytearray)


class MultipartFile:
    """Reads a form whose last part is the file: `await open()` parses up to the file's
    headers (collecting earlier small fields), then `chunks()` yields its bytes."""

    def __init__(self, request: Request, *, file_field: str = "file") -> None:
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        if content_type != b"multipart/form-data" or b"boundary" not in options:
            raise UnsupportedMediaType(
                "the upload must be multipart/form-data with a boundary (field `file`, last)"
            )
        self.file_field = file_field
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.content_type: str | None = None
        self._body = request.stream()
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._in_file = False
        self._file_done = False
        self._data: list[bytes] = []
        try:
            self._parser = self._make_parser(options[b"boundary"])
        except FormParserError as error:
            raise MalformedRequest(f"the multipart boundary is not usable: {error}") from None

    def _make_parser(self, boundary: bytes) -> MultipartParser:
        return MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": self._hfield,
                "on_header_value": self._hvalue,
                "on_header_end": self._hend,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._pdata,
                "on_part_end": self._pend,
            },
        )

    # parser callbacks --------------------------------------------------------------
    def _begin(self) -> None:
        self._part = _Part()

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _hend(self) -> None:
        self._part.headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_done(self) -> None:
        part = self._part
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        if raw_filename is not None:
            try:
                part.filename = raw_filename.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput("the file name is not valid UTF-8") from None
        part.content_type = part.headers.get(b"content-type", b"").decode("latin-1") or None
        if self._file_done:  # anything after the file would be read too late to matter
            raise MalformedRequest(
                f"form field {part.name!r} comes after the file part {self.file_field!r}; "
                "send every other field before the file"
            )
        if part.name == self.file_field and part.filename is not None:
            self._in_file = True
            self.filename, self.content_type = part.filename, part.content_type

    def _pdata(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._data.append(bytes(data[start:end]))
            return
        self._part.value += data[start:end]
        if len(self._part.value) > MAX_FIELD_BYTES:
            raise InvalidInput(f"form field {self._part.name!r} is too large")

    def _pend(self) -> None:
        if self._in_file:
            self._in_file, self._file_done = False, True
        elif self._part.name:
            self.fields[self._part.name] = self._part.value.decode("utf-8", "replace")

    # reading -----------------------------------------------------------------------
    async def _feed(self) -> bool:
        """Parse the next chunk of the body; False at its end."""
        try:
            chunk = await self._body.__anext__()
        except StopAsyncIteration:
            return False
        except ClientDisconnect:
            raise ClientGone() from None
        if chunk:
            try:
                self._parser.write(chunk)
            except FormParserError as error:
                raise MalformedRequest(f"the multipart body is malformed: {error}") from None
        return True

    async def open(self) -> None:
        """Parse until the file part's headers; InvalidInput if the form has no file."""
        while self.filename is None:
            if not await self._feed():
                raise InvalidInput(f"the form has no file part named {self.file_field!r}")

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            while self._data:
                yield self._data.pop(0)
            if self._file_done:
                # Read the rest (the closing boundary) so a part after the file is refused
                # before the upload is recorded.
                while await self._feed():
                    pass
                return
            if not await self._feed():
                raise InvalidInput("the upload ended before the file part was complete")

    def sync_chunks(self) -> Iterator[bytes]:
        """`chunks()` for code in a worker thread (the object store is synchronous)."""
        return to_sync(self.chunks())


#: Bytes handed to the worker thread at a time: one hop per ~1 MiB, not per socket read.
BATCH_BYTES = 1024 * 1024


async def _next_batch(stream: AsyncIterator[bytes]) -> bytes:
    """The next ~1 MiB of the stream (b"" at its end)."""
    parts: list[bytes] = []
    size = 0
    while size < BATCH_BYTES:
        try:
            chunk = await anext(stream)
        except StopAsyncIteration:
            break
        except ClientDisconnect:
            raise ClientGone() from None
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def to_sync(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """Pull an async byte stream from any thread, in ~1 MiB batches awaited on the event
    loop (at most one batch in flight). Call it on the event loop: it captures the loop's
    token there, since the consumer may be a thread anyio did not start (boto3's transfer
    threads)."""
    token = anyio.lowlevel.current_token()

    def chunks() -> Iterator[bytes]:
        while batch := anyio.from_thread.run(_next_batch, stream, token=token):
            yield batch

    return chunks()
