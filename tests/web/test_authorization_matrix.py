"""Every route in the OpenAPI schema has an access decision, and behaves by it:
no identity -> 401; another user's resource -> 404; a user on an admin route -> 403;
the allowed principal gets through. A new route without a decision fails this test."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.functions.inference.onnx_graphs import segmentation_model
from tests.support.app import PASSWORD, make_admin, register, wait_for_job
from tests.support.fixtures import REAL

PUBLIC = "public"  # no identity needed
SIGNED = "signed"  # no identity: the URL's own signature decides (403 without one)
REFRESH = "refresh"  # no identity: the refresh token in the body or cookie is the credential
USER = "user"  # any signed-in user
OWNED = "owned"  # the owner or an admin; others get 404
SELF = "self"  # the owner only (personal credentials); others, admins too, get 404
ADMIN = "admin"  # admins only; users get 403
WEBHOOK = "webhook"  # no identity: an external service's HMAC signature decides (401 without)

ACCESS: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/health"): PUBLIC,
    ("POST", "/api/v1/auth/register"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/refresh"): REFRESH,
    ("POST", "/api/v1/auth/logout"): USER,
    ("GET", "/api/v1/auth/me"): USER,
    ("GET", "/api/v1/auth/sessions"): USER,
    ("DELETE", "/api/v1/auth/sessions/{session_id}"): SELF,
    ("POST", "/api/v1/auth/api-keys"): USER,
    ("GET", "/api/v1/auth/api-keys"): USER,
    ("DELETE", "/api/v1/auth/api-keys/{key_id}"): SELF,
    ("GET", "/api/v1/users/me"): USER,
    ("PATCH", "/api/v1/users/me"): USER,
    ("GET", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/users/{user_id}"): ADMIN,
    ("PATCH", "/api/v1/users/{user_id}"): ADMIN,
    ("POST", "/api/v1/users/{user_id}/deactivate"): ADMIN,
    ("POST", "/api/v1/users/{user_id}/activate"): ADMIN,
    ("GET", "/api/v1/events"): USER,
    ("GET", "/api/v1/functions"): USER,
    ("GET", "/api/v1/functions/{name}"): USER,
    ("POST", "/api/v1/files"): USER,
    ("GET", "/api/v1/files/{file_id}"): OWNED,
    ("GET", "/api/v1/files/{file_id}/download"): OWNED,
    ("POST", "/api/v1/jobs"): USER,
    ("GET", "/api/v1/jobs"): USER,
    ("GET", "/api/v1/jobs/stats"): USER,
    ("GET", "/api/v1/jobs/{job_id}"): OWNED,
    ("PATCH", "/api/v1/jobs/{job_id}"): OWNED,
    ("POST", "/api/v1/jobs/{job_id}/cancel"): OWNED,
    ("DELETE", "/api/v1/jobs/{job_id}/cancel"): OWNED,
    ("GET", "/api/v1/jobs/{job_id}/logs"): OWNED,
    ("GET", "/api/v1/jobs/{job_id}/events"): OWNED,
    ("GET", "/api/v1/analysis/models"): USER,
    ("POST", "/api/v1/analysis/load-traces"): USER,
    ("POST", "/api/v1/analysis/fitting/start"): USER,
    ("GET", "/api/v1/analysis/fitting/status/{job_id}"): OWNED,
    ("POST", "/api/v1/analysis/fitting/cancel/{job_id}"): OWNED,
    ("GET", "/api/v1/analysis/fitting/results/{job_id}"): OWNED,
    ("POST", "/api/v1/processing/load-metadata"): USER,
    ("GET", "/api/v1/processing/features"): USER,
    ("POST", "/api/v1/processing/workflow/start"): USER,
    ("GET", "/api/v1/processing/workflow/status/{job_id}"): OWNED,
    ("POST", "/api/v1/processing/workflow/cancel/{job_id}"): OWNED,
    ("GET", "/api/v1/processing/workflow/results/{job_id}"): OWNED,
    ("POST", "/api/v1/processing/merge"): USER,
    ("GET", "/api/v1/processing/merge/results/{job_id}"): OWNED,
    ("POST", "/api/v1/datasets"): USER,
    ("GET", "/api/v1/datasets"): USER,
    ("GET", "/api/v1/datasets/stats"): USER,
    ("GET", "/api/v1/datasets/{dataset_id}"): OWNED,
    ("PATCH", "/api/v1/datasets/{dataset_id}"): OWNED,
    ("DELETE", "/api/v1/datasets/{dataset_id}"): OWNED,
    ("GET", "/api/v1/datasets/{dataset_id}/files"): OWNED,
    ("POST", "/api/v1/datasets/{dataset_id}/files"): OWNED,
    ("DELETE", "/api/v1/datasets/{dataset_id}/files/{file_id}"): OWNED,
    ("POST", "/api/v1/datasets/{dataset_id}/builds"): OWNED,
    ("GET", "/api/v1/datasets/{dataset_id}/builds"): OWNED,
    ("GET", "/api/v1/datasets/{dataset_id}/builds/{job_id}"): OWNED,
    ("POST", "/api/v1/files/uploads"): USER,
    ("GET", "/api/v1/files/uploads/{upload_id}"): SELF,
    ("POST", "/api/v1/files/uploads/{upload_id}/complete"): SELF,
    ("DELETE", "/api/v1/files/uploads/{upload_id}"): SELF,
    ("POST", "/api/v1/files/import"): USER,
    ("GET", "/api/v1/files"): USER,
    ("GET", "/api/v1/files/usage"): USER,
    ("POST", "/api/v1/files/bulk-delete"): USER,
    ("PATCH", "/api/v1/files/{file_id}"): OWNED,
    ("DELETE", "/api/v1/files/{file_id}"): OWNED,
    ("GET", "/api/v1/slides"): USER,
    ("POST", "/api/v1/slides/bulk-delete"): USER,
    ("GET", "/api/v1/slides/{slide_id}"): OWNED,
    ("PATCH", "/api/v1/slides/{slide_id}"): OWNED,
    ("DELETE", "/api/v1/slides/{slide_id}"): OWNED,
    ("GET", "/api/v1/slides/{slide_id}/properties"): OWNED,
    ("GET", "/api/v1/slides/{slide_id}/thumbnail"): OWNED,
    ("GET", "/api/v1/slides/{slide_id}/associated/{image}"): OWNED,
    ("GET", "/api/v1/viewer"): PUBLIC,
    ("GET", "/api/v1/viewer/login"): PUBLIC,
    ("GET", "/api/v1/viewer/{slide_id}"): PUBLIC,
    ("GET", "/api/v1/viewer/{slide_id}.dzi"): OWNED,
    ("GET", "/api/v1/viewer/{slide_id}_files/{level}/{col}_{row}.{fmt}"): OWNED,
    ("GET", "/api/v1/inference/models"): USER,
    ("POST", "/api/v1/inference/models"): USER,
    ("DELETE", "/api/v1/inference/models/{model_id}"): OWNED,
    ("GET", "/api/v1/inference/services"): ADMIN,
    ("POST", "/api/v1/inference/services"): ADMIN,
    ("DELETE", "/api/v1/inference/services/{service_id}"): ADMIN,
    ("POST", "/api/v1/inference"): USER,
    ("GET", "/api/v1/inference/tasks"): USER,
    ("GET", "/api/v1/inference/tasks/{task_id}"): OWNED,
    ("DELETE", "/api/v1/inference/tasks/{task_id}"): OWNED,
    ("POST", "/api/v1/inference/webhook/callback"): WEBHOOK,
    ("GET", "/api/v1/viewer/predictions/{slide_id}"): OWNED,
    ("GET", "/api/v1/viewer/predictions/{slide_id}/density"): OWNED,
    ("GET", "/api/v1/signed/object"): SIGNED,
    ("PUT", "/api/v1/signed/object"): SIGNED,
    ("PUT", "/api/v1/signed/part"): SIGNED,
}


#: Routes that destroy the resource they name: the admin and the owner each get a fresh
#: one of A's, so the first call does not turn the second into a 404.
DESTROYS = {
    ("DELETE", "/api/v1/datasets/{dataset_id}"),
    ("DELETE", "/api/v1/files/{file_id}"),
    ("DELETE", "/api/v1/files/uploads/{upload_id}"),
    ("POST", "/api/v1/files/uploads/{upload_id}/complete"),
    ("DELETE", "/api/v1/slides/{slide_id}"),
    ("DELETE", "/api/v1/inference/models/{model_id}"),
}
#: A's slide: a real one, so the metadata job makes its record.
SLIDE = REAL / "small.svs"


def _routes(client: TestClient) -> set[tuple[str, str]]:
    schema = client.get("/openapi.json").json()
    return {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_every_route_has_an_access_decision(app_client: TestClient) -> None:
    routes = _routes(app_client)
    assert routes - set(ACCESS) == set(), "routes without an access decision"
    assert set(ACCESS) - routes == set(), "decisions for routes that no longer exist"


class World:
    """User A with one resource of each kind, user B, an admin, and a spare account."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.a_email = f"a-{uuid.uuid4().hex[:8]}@example.org"
        self.a = register(client, self.a_email)
        self.b = register(client)
        self.admin = make_admin(client)
        job = client.post("/api/v1/jobs", json={"function": "noop"}, headers=self.a).json()
        wait_for_job(_Signed(client, self.a), job["id"])
        stored = client.post("/api/v1/files", files={"file": ("a.txt", b"a")}, headers=self.a)
        key = client.post("/api/v1/auth/api-keys", json={"name": "a"}, headers=self.a).json()
        spare = client.post(
            "/api/v1/auth/login", json={"email": self.a_email, "password": PASSWORD}
        ).json()
        client.cookies.clear()
        sessions = client.get(
            "/api/v1/auth/sessions", headers={"Authorization": f"Bearer {spare['access_token']}"}
        )
        current = next(s for s in sessions.json() if s["current"])
        spare_user = client.post(
            "/api/v1/users",
            headers=self.admin,
            json={"email": f"s-{uuid.uuid4().hex[:8]}@example.org", "password": PASSWORD},
        ).json()
        self.params = {
            "job_id": job["id"],
            "file_id": stored.json()["id"],
            "key_id": key["id"],
            "session_id": current["id"],
            "user_id": spare_user["id"],
            "name": "noop",
        }
        self.params["dataset_id"] = self.new_dataset()
        self.params["upload_id"] = self.new_upload()
        self.params |= {
            "slide_id": self.new_slide(),
            "image": "thumbnail",
            "level": 0,
            "col": 0,
            "row": 0,
            "fmt": "jpeg",
        }
        self.params |= {
            "model_id": self.new_model(),
            "service_id": self.new_service(),
            "task_id": self.new_task(),
        }

    def new_dataset(self) -> str:
        created = self.client.post("/api/v1/datasets", json={"name": "a"}, headers=self.a)
        return str(created.json()["id"])

    def new_file(self) -> str:
        stored = self.client.post("/api/v1/files", files={"file": ("a.txt", b"a")}, headers=self.a)
        return str(stored.json()["id"])

    def new_upload(self) -> str:
        plan = self.client.post(
            "/api/v1/files/uploads", json={"name": "a.txt", "size": 1}, headers=self.a
        )
        return str(plan.json()["id"])

    def new_slide(self) -> str:
        """Upload a slide; its metadata job (submitted by the upload) makes the record."""
        stored = self.client.post(
            "/api/v1/files", files={"file": ("a.svs", SLIDE.read_bytes())}, headers=self.a
        ).json()
        a = _Signed(self.client, self.a)
        jobs = a.get("/api/v1/jobs?function=metadata&limit=500").json()["items"]
        job = next(j for j in jobs if j["params"].get("file_id") == stored["id"])
        wait_for_job(a, job["id"])
        slides = a.get(f"/api/v1/slides?file_id={stored['id']}").json()["items"]
        return str(slides[0]["id"])

    def new_model(self) -> str:
        """An ONNX model of A's, registered from an uploaded graph."""
        graph = self.client.post(
            "/api/v1/files", files={"file": ("m.onnx", segmentation_model())}, headers=self.a
        ).json()
        declared = {
            "file_id": graph["id"],
            "name": f"m-{uuid.uuid4().hex[:8]}",
            "input": {"size": 256, "mpp": 0.5},
            "output": {"kind": "segmentation", "classes": ["nucleus"]},
        }
        created = self.client.post("/api/v1/inference/models", json=declared, headers=self.a)
        return str(created.json()["id"])

    def new_service(self) -> str:
        body = {
            "name": f"s-{uuid.uuid4().hex[:8]}",
            "base_url": "http://127.0.0.1:9/",
            "secret": "s" * 32,
            "output": {"classes": ["cell"]},
        }
        created = self.client.post("/api/v1/inference/services", json=body, headers=self.admin)
        return str(created.json()["id"])

    def new_task(self) -> str:
        """A finished nuclei-he task of A's over A's slide (so the slide has predictions)."""
        a = _Signed(self.client, self.a)
        body = {"slide_id": self.params["slide_id"], "model": "nuclei-he"}
        task = self.client.post("/api/v1/inference", json=body, headers=self.a).json()
        assert wait_for_job(a, task["task_id"])["status"] == "succeeded"
        return str(task["task_id"])

    def url(self, path: str, *, fresh: bool = False) -> str:
        if fresh:
            return path.format(
                **{
                    **self.params,
                    "dataset_id": self.new_dataset(),
                    "file_id": self.new_file(),
                    "upload_id": self.new_upload(),
                    **({"slide_id": self.new_slide()} if "{slide_id}" in path else {}),
                    **({"model_id": self.new_model()} if "{model_id}" in path else {}),
                }
            )
        return path.format(**self.params)

    def fresh_a(self) -> dict[str, str]:
        """A new token for A (some calls, like logout, end the session they use)."""
        response = self.client.post(
            "/api/v1/auth/login", json={"email": self.a_email, "password": PASSWORD}
        )
        self.client.cookies.clear()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


class _Signed:
    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def get(self, url: str) -> Any:
        return self.client.get(url, headers=self.headers)


@pytest.fixture(scope="module")
def world(app_client: TestClient) -> World:
    return World(app_client)


def _call(client: TestClient, method: str, url: str, headers: dict[str, str] | None = None) -> int:
    body = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
    return client.request(method, url, headers=headers or {}, **body).status_code


@pytest.mark.parametrize(("method", "path"), sorted(ACCESS))
def test_route_behaves_by_its_decision(world: World, method: str, path: str) -> None:
    client, decision, url = world.client, ACCESS[(method, path)], world.url(path)
    anonymous = _call(client, method, url)
    if decision == PUBLIC:
        assert anonymous != 401, f"{method} {path} should not need an identity"
        return
    if decision == REFRESH:
        response = client.request(method, url, json={})
        assert response.status_code == 401 and "refresh token" in response.json()["detail"]
        return
    if decision == WEBHOOK:
        response = client.request(method, url, json={})
        assert response.status_code == 401 and "X-Aperture-Signature" in response.json()["detail"]
        return
    if decision == SIGNED:
        assert anonymous == 403, f"{method} {path} must refuse a missing signature"
        return
    assert anonymous == 401, f"{method} {path} answered {anonymous} without an identity"
    if decision == ADMIN:
        assert _call(client, method, url, world.b) == 403
        assert _call(client, method, url, world.admin) not in {401, 403, 404}
        return
    fresh = (method, path) in DESTROYS
    if decision in {OWNED, SELF}:
        assert _call(client, method, url, world.b) == 404, "another user's resource"
        admin = _call(client, method, world.url(path, fresh=fresh), world.admin)
        assert (admin not in {401, 403, 404}) if decision == OWNED else admin == 404
    url = world.url(path, fresh=fresh)
    assert _call(client, method, url, world.fresh_a()) not in {401, 403, 404}


def test_websocket_needs_an_identity(world: World) -> None:
    from starlette.websockets import WebSocketDisconnect

    with (
        pytest.raises(WebSocketDisconnect) as closed,
        world.client.websocket_connect("/api/v1/ws/jobs") as websocket,
    ):
        websocket.receive_json()
    assert closed.value.code == 1008
    token = world.a["Authorization"].removeprefix("Bearer ")
    with world.client.websocket_connect(f"/api/v1/ws/jobs?access_token={token}") as websocket:
        job = world.client.post("/api/v1/jobs", json={"function": "noop"}, headers=world.a).json()
        assert websocket.receive_json()["event"]["job_id"] == job["id"]


def test_websocket_streams_only_the_callers_jobs(world: World) -> None:
    with world.client.websocket_connect("/api/v1/ws/jobs", headers=world.b) as websocket:
        theirs = world.client.post(
            "/api/v1/jobs", json={"function": "noop"}, headers=world.a
        ).json()
        mine = world.client.post("/api/v1/jobs", json={"function": "noop"}, headers=world.b).json()
        seen = websocket.receive_json()["event"]["job_id"]
        assert seen == mine["id"] != theirs["id"]
