"""A stand-in external inference service: a real HTTP server on 127.0.0.1 (a thread of
the test process) speaking the protocol Aperture's external tasks use.

`POST /tasks` (signed by Aperture with the shared secret) records the task and, in
"run" mode, works it on a thread: downloads the slide through the presigned URL, then
calls back signed `started`, `progress` and `succeeded` with GeoJSON predictions (inline,
or with `by_url` at `GET /predictions/{id}`, which Aperture fetches). In "hold" mode it
only records the task (the test drives callbacks itself). `DELETE /tasks/{id}` (signed)
records a cancellation. The signature check here is written independently of
`common.webhooks`, as a service's own would be.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HEADER = "X-Aperture-Signature"


def signed_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _valid(secret: str, header: str | None, body: bytes) -> bool:
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if not parts.get("t", "").isdigit() or abs(time.time() - int(parts["t"])) > 300:
        return False
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def square(x: float, y: float, half: float, name: str, confidence: float) -> dict[str, Any]:
    ring = [[x - half, y - half], [x + half, y - half], [x + half, y + half], [x - half, y + half]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
        "properties": {
            "classification": {"name": name},
            "confidence": confidence,
            "measurements": {"darkness": round(confidence * 100, 1)},
        },
    }


class StandInService:
    """See the module docstring. `mode` is "run" or "hold"."""

    def __init__(self, secret: str, predictions: dict[str, Any]) -> None:
        self.secret = secret
        self.predictions = predictions
        self.mode = "run"
        self.by_url = False  # succeeded callbacks name predictions_url instead of inlining
        self.fetched: list[str] = []  # tasks whose predictions were fetched by URL
        self.tasks: dict[str, dict[str, Any]] = {}
        self.downloads: dict[str, bytes] = {}
        self.cancelled: list[str] = []
        self.refused: list[str] = []  # requests whose signature did not check out
        self.callbacks: list[httpx.Response] = []
        self.errors: list[str] = []
        self.changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __repr__(self) -> str:
        return f"StandInService({self.url}, {len(self.tasks)} tasks)"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StandInService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, predicate: Any, timeout: float = 30) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise AssertionError(f"stand-in service: condition not met in {timeout} s")

    def callback(
        self,
        task_id: str,
        event: dict[str, Any],
        *,
        header: str | bool | None = True,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> httpx.Response:
        """POST an event to the task's callback_url, signed (header=True), unsigned
        (None) or with the given header."""
        body = json.dumps({"task_id": task_id, "event_id": uuid.uuid4().hex, **event}).encode()
        headers = {"Content-Type": "application/json"}
        if header is True:
            headers[HEADER] = signed_header(secret or self.secret, body, timestamp)
        elif isinstance(header, str):
            headers[HEADER] = header
        url = self.tasks[task_id]["callback_url"] if task_id in self.tasks else self.callback_url
        return httpx.post(url, content=body, headers=headers, timeout=30)

    callback_url = ""  # set by the test before calling back for a task it never received

    def _work(self, task: dict[str, Any]) -> None:
        task_id = task["task_id"]
        try:
            slide = httpx.get(task["slide"]["download_url"], timeout=60)
            slide.raise_for_status()
            with self.changed:
                self.downloads[task_id] = slide.content
            for event in (
                {"status": "started"},
                {"status": "progress", "progress": 0.5, "message": "half the tiles"},
                self._succeeded(task_id),
            ):
                response = self.callback(task_id, event)
                with self.changed:
                    self.callbacks.append(response)
                    self.changed.notify_all()
        except Exception as error:  # reported to the test, which asserts there are none
            with self.changed:
                self.errors.append(f"{type(error).__name__}: {error}")
                self.changed.notify_all()

    def _succeeded(self, task_id: str) -> dict[str, Any]:
        if self.by_url:
            return {"status": "succeeded", "predictions_url": f"{self.url}/predictions/{task_id}"}
        return {"status": "succeeded", "predictions": self.predictions}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self._body()
                if self.path != "/tasks" or not _valid(service.secret, self.headers[HEADER], body):
                    service.refused.append(f"POST {self.path}")
                    self._answer(401)
                    return
                task = json.loads(body)
                with service.changed:
                    service.tasks[task["task_id"]] = task
                    service.changed.notify_all()
                self._answer(202)
                if service.mode == "run":
                    threading.Thread(target=service._work, args=(task,), daemon=True).start()

            def do_GET(self) -> None:
                task_id = self.path.removeprefix("/predictions/")
                if task_id not in service.tasks:
                    self._answer(404)
                    return
                body = json.dumps(service.predictions).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/geo+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with service.changed:
                    service.fetched.append(task_id)

            def do_DELETE(self) -> None:
                body = self._body()
                if not self.path.startswith("/tasks/") or not _valid(
                    service.secret, self.headers[HEADER], body
                ):
                    service.refused.append(f"DELETE {self.path}")
                    self._answer(401)
                    return
                with service.changed:
                    service.cancelled.append(self.path.removeprefix("/tasks/"))
                    service.changed.notify_all()
                self._answer(204)

        return Handler
