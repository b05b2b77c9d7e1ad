"""Structured logs: one JSON object per line (or plain text for a terminal), carrying the
request id of the request being served."""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := request_id_var.get():
            entry["request_id"] = request_id
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


#: Loggers of file-format libraries: what they report is a problem of the file a user
#: sent (and the request answers it with a 4xx), not of the service.
USER_FILE_LOGGERS = ("tifffile",)


class UserErrorsAtInfo(logging.Filter):
    """Writes the file-format libraries' errors at info: user errors are not errors of
    the service. (Handlers on those loggers, such as `common.sniff`'s, still see the
    original level: they run before the record reaches the root's handler.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in USER_FILE_LOGGERS and record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(UserErrorsAtInfo())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would duplicate ours
    logging.getLogger("uvicorn.access").disabled = True
