"""The Modal app declares one function per capability with the capability's own resources
and image, plus the web function and the scheduled cleanup; it imports without Modal
credentials. The scheduled pass runs against a real database through the Modal stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import modal
import pytest
from modal._utils.async_utils import synchronizer
from modal_proto import api_pb2
from pydantic import BaseModel

from common.capabilities import Capability, Resources, registered
from common.executors.modal import ModalExecutor, function_name
from common.jobs.status import Status
from common.records import migrate
from common.runtime import Runtime
from tests.support.app import REPO, make_settings
from tests.support.modal_standin import ModalStandIn


@pytest.fixture(scope="module")
def modal_app() -> Any:
    import infra.modal_app

    return infra.modal_app


def _inner(function: modal.Function[Any, Any, Any]) -> Any:
    """Modal's own object behind the synchronous wrapper (what `modal deploy` sends)."""
    return synchronizer._translate_in(function)


def _autoscaler(function: modal.Function[Any, Any, Any]) -> Any:
    """The autoscaler settings Modal will deploy (max_containers lives only there)."""
    cells = _inner(function)._load.__closure__ or ()
    found = [
        c.cell_contents for c in cells if isinstance(c.cell_contents, api_pb2.AutoscalerSettings)
    ]
    assert len(found) == 1
    return found[0]


def test_import_needs_no_modal_credentials() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env |= {"HOME": "/nonexistent", "MODAL_CONFIG_PATH": "/nonexistent/.modal.toml"}
    done = subprocess.run(
        [sys.executable, "-c", "import infra.modal_app as m; print(len(m.CAPABILITY_FUNCTIONS))"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) >= 1


def test_every_capability_has_a_function_with_its_resources(modal_app: Any) -> None:
    functions = modal_app.CAPABILITY_FUNCTIONS
    ours = {n for n, c in registered().items() if c.run.__module__.startswith("functions.")}
    assert ours <= set(functions)
    for name, function in functions.items():
        capability = registered()[name]
        resources = capability.resources
        assert getattr(modal_app, function_name(name)) is function
        assert isinstance(function, modal.Function)
        info = function.info()  # local declaration: no network for a function we define
        assert (info.cpu, info.memory_mib, info.timeout) == (
            resources.cpu,
            resources.memory_mib,
            resources.timeout_s,
        ), name
        assert (info.max_retries or 0) == resources.retries, name
        assert info.gpus == ([(resources.gpu, 1)] if resources.gpu else []), name
        assert (_autoscaler(function).max_containers or None) == resources.max_containers
        image = modal_app.gpu_image if resources.gpu else modal_app.cpu_image
        assert _inner(function)._spec.image is synchronizer._translate_in(image), name
        # GPU containers share CuPy's compiled kernels (CUPY_CACHE_DIR in the GPU image)
        volumes = _inner(function)._spec.volumes
        cache = synchronizer._translate_in(modal_app.kernel_cache)
        assert volumes == ({modal_app.KERNEL_CACHE_PATH: cache} if resources.gpu else {}), name
        assert len(info.secrets) == len(modal_app.SECRET_NAMES)


def test_gpu_capabilities_get_the_gpu_image(modal_app: Any) -> None:
    class Nothing(BaseModel):
        pass

    gpu = Capability(
        name="test.gpu",
        params=Nothing,
        result=Nothing,
        run=lambda params, ctx: Nothing(),
        resources=Resources(gpu="L40S", cpu=4, max_containers=3),
    )
    options = modal_app.function_options(gpu)
    assert options["image"] is modal_app.gpu_image and options["gpu"] == "L40S"
    assert options["max_containers"] == 3
    cpu = Capability(
        name="test.cpu", params=Nothing, result=Nothing, run=lambda params, ctx: Nothing()
    )
    assert modal_app.function_options(cpu)["image"] is modal_app.cpu_image


def test_the_web_function_and_the_scheduled_cleanup_exist(modal_app: Any) -> None:
    web = modal_app.web.info()
    assert web.web_info is not None and web.concurrency_info is not None
    cleanup = modal_app.cleanup.info()
    assert cleanup.schedule == f"Cron('{modal_app.CLEANUP_CRON}', UTC)"
    assert modal_app.app.name == modal_app.APP_NAME


def test_the_images_install_the_locked_dependencies_and_gpu_stack(modal_app: Any) -> None:
    assert modal_app.GPU_ENV["CUPY_CACHE_DIR"].startswith(modal_app.KERNEL_CACHE_PATH + "/")
    assert any(c.resources.gpu for c in registered().values())  # fitting.gpu at least
    assert all("==" in package for package in modal_app.GPU_PACKAGES)
    assert {p.split("[")[0].split("==")[0] for p in modal_app.GPU_PACKAGES} == {
        "cupy-cuda12x",
        "cucim-cu12",
        "onnxruntime-gpu",  # the CUDA provider for ONNX models on GPU regions
    }
    # the GPU build replaces the locked CPU onnxruntime (same `onnxruntime` package)
    assert modal_app.GPU_REPLACES == ("onnxruntime",)
    lock = (REPO / "uv.lock").read_text()
    assert 'name = "onnxruntime"' in lock and 'name = "onnxruntime-gpu"' not in lock
    assert (REPO / "uv.lock").exists()
    pins = (REPO / "pyproject.toml").read_text()
    assert '"modal~=1.' in pins


@pytest.fixture
def cleanup_runtime(tmp_path: Path) -> Iterator[tuple[Runtime, ModalExecutor, ModalStandIn]]:
    runtime = Runtime.from_settings(make_settings(tmp_path / "data", executor="modal"))
    migrate(runtime.engine)
    standin = ModalStandIn(runtime)
    executor = ModalExecutor(runtime, api=standin, quiet_after_s=0.0)
    runtime.submit = executor.submit_or_fail
    try:
        yield runtime, executor, standin
    finally:
        standin.hold.set()
        standin.wait_idle()
        runtime.close()


def test_the_scheduled_pass_recovers_stuck_jobs(
    modal_app: Any,
    cleanup_runtime: tuple[Runtime, ModalExecutor, ModalStandIn],
) -> None:
    runtime, executor, standin = cleanup_runtime
    standin.hold.clear()
    job = runtime.jobs.create(function="noop", params={}, executor="modal")
    executor.submit(job.id)
    standin.expired.update(standin.calls)  # Modal lost the call before it ran
    outcome = modal_app.run_cleanup(runtime, executor)
    assert outcome["swept"] is True
    assert runtime.jobs.get(job.id).status is Status.failed
    if "cleanup" not in registered():
        assert outcome["cleanup"] is None
    else:
        cleanup_job = runtime.jobs.get(uuid.UUID(outcome["cleanup"]))
        assert cleanup_job.function == "cleanup" and outcome["status"] == "succeeded"
