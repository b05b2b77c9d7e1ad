"""The Modal app: one function per capability, the web API, and the scheduled cleanup.

Deploy with `modal deploy -m infra.modal_app`. The functions are generated from the
capability registry, so each one's resources (cpu, memory, gpu, timeout, retries, max
containers) are the capability's own declaration and the two can never drift apart. Every
capability function runs the same `run_job` entrypoint as a local worker.

Secrets (create them in Modal before deploying; every key is an `APERTURE_*` setting):

- `aperture-database`: `APERTURE_DATABASE_URL` (the Supabase pooler URL for functions).
- `aperture-storage`: `APERTURE_S3_ENDPOINT_URL`, `APERTURE_S3_BUCKET`,
  `APERTURE_S3_REGION`, `APERTURE_S3_PATH_STYLE`, `APERTURE_S3_ACCESS_KEY_ID`,
  `APERTURE_S3_SECRET_ACCESS_KEY`.
- `aperture-supabase`: `APERTURE_SUPABASE_URL` (issuer and JWKS at
  `<url>/auth/v1/.well-known/jwks.json`), `APERTURE_SUPABASE_JWT_SECRET` (legacy HS256
  projects only).
- `aperture-app`: `APERTURE_SECRET_KEY`, `APERTURE_PUBLIC_URL`, `APERTURE_CORS_ORIGINS`.

Importing this module needs no Modal credentials and stays cheap: images and secrets are
lazy references, and database, storage and web imports happen inside function bodies.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modal

from common.capabilities import Capability, load_capabilities
from common.executors.modal import function_name
from common.settings import Settings

if TYPE_CHECKING:
    from common.executors.modal import ModalExecutor
    from common.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
APP_NAME = os.environ.get("APERTURE_MODAL_APP", Settings.model_fields["modal_app"].default)
#: When the cleanup function runs (UTC cron), fixed at deploy time.
CLEANUP_CRON: str = os.environ.get(
    "APERTURE_MODAL_CLEANUP_CRON", Settings.model_fields["modal_cleanup_cron"].default
)
CLEANUP_CAPABILITY = "cleanup"

PYTHON_VERSION = "3.11"
UV_VERSION = "0.13.9"
#: GPU array stack on top of the project's locked dependencies (CUDA 12 wheels; the
#: `ctk` extra brings the CUDA runtime libraries cupy compiles kernels with). cupy runs
#: the fitting solver and the microscopy kernels (`common.arrays`). cucim (scikit-image
#: on the GPU) is for the inference capability's GPU path, whose CPU twin uses
#: scikit-image. onnxruntime-gpu gives `inference.region.gpu` the CUDA execution
#: provider for users' ONNX models (its `cuda`/`cudnn` extras bring the CUDA 13 runtime
#: and cuDNN wheels it loads with `onnxruntime.preload_dlls()`; ORT falls back to the CPU
#: provider, same results, if they cannot load). It is the newest GPU build (the lock's
#: CPU onnxruntime may be newer) and replaces `onnxruntime` there: both install the
#: `onnxruntime` package, and one over the other would leave a mix of their files.
GPU_PACKAGES = (
    "cupy-cuda12x[ctk]==14.2.0",
    "cucim-cu12==26.10.0",
    "onnxruntime-gpu[cuda,cudnn]==1.31.1",
)
#: Locked packages the GPU image uninstalls before adding GPU_PACKAGES.
GPU_REPLACES = ("onnxruntime",)
#: CuPy compiles each kernel on first use (~50 s for the fitting solver's on an H100) and
#: caches the binaries on disk; GPU containers share that cache through a Volume, so a
#: cold container pays the compile only once per deployment.
KERNEL_CACHE_PATH = "/kernel-cache"
GPU_ENV = {"CUPY_CACHE_DIR": f"{KERNEL_CACHE_PATH}/cupy"}
SOURCES = ("common", "functions", "web", "infra")
SECRET_NAMES = ("aperture-database", "aperture-storage", "aperture-supabase", "aperture-app")
#: Defaults for every container; the secrets above supply (and may override) the rest.
CONTAINER_ENV = {
    "APERTURE_ENVIRONMENT": "production",
    "APERTURE_EXECUTOR": "modal",
    "APERTURE_OBJECT_STORE": "s3",
    "APERTURE_AUTH_PROVIDER": "supabase",
    "APERTURE_MODAL_APP": APP_NAME,
    "APERTURE_LOG_FORMAT": "json",
}
WEB_TIMEOUT_S = 600
WEB_MAX_INPUTS = 100
CLEANUP_TIMEOUT_S = 3600


def _image(
    *extra_packages: str, env: dict[str, str] | None = None, replaces: tuple[str, ...] = ()
) -> modal.Image:
    """debian-slim with the project's locked dependencies (`uv.lock`, no dev group), less
    `replaces`, plus `extra_packages`."""
    image = modal.Image.debian_slim(python_version=PYTHON_VERSION).uv_sync(
        str(ROOT), uv_version=UV_VERSION, extra_options="--no-dev"
    )
    if replaces:  # uv_sync left uv at /.uv/uv and its venv's python first on PATH
        image = image.run_commands(
            f"/.uv/uv pip uninstall --python $(command -v python) {' '.join(replaces)}"
        )
    if extra_packages:
        image = image.uv_pip_install(*extra_packages, uv_version=UV_VERSION)
    # Sources last: they are mounted at start, so code changes need no image rebuild.
    # Non-Python files are kept (viewer assets, migrations).
    return image.env(CONTAINER_ENV | (env or {})).add_local_python_source(
        *SOURCES, ignore=["**/__pycache__/**", "**/.*"]
    )


cpu_image = _image()
gpu_image = _image(*GPU_PACKAGES, env=GPU_ENV, replaces=GPU_REPLACES)
kernel_cache = modal.Volume.from_name(f"{APP_NAME}-kernel-cache", create_if_missing=True)
secrets = [modal.Secret.from_name(name) for name in SECRET_NAMES]

app = modal.App(APP_NAME, include_source=False)


# -- the container side ----------------------------------------------------------------

_container: tuple[Runtime, ModalExecutor] | None = None
_container_lock = threading.Lock()


def container_runtime() -> tuple[Runtime, ModalExecutor]:
    """This container's runtime (from settings in the environment), built once; children
    spawned with `ctx.spawn` go to Modal through its executor."""
    global _container
    with _container_lock:
        if _container is None:
            from common.executors.modal import ModalExecutor
            from common.logs import configure_logging
            from common.runtime import Runtime

            settings = Settings()
            configure_logging(settings.log_format, settings.log_level)
            runtime = Runtime.from_settings(settings)
            executor = ModalExecutor(runtime)
            runtime.submit = executor.submit_or_fail
            _container = (runtime, executor)
        return _container


def _run(job_id: str) -> str | None:
    from common.executors.modal import run_call

    runtime, _ = container_runtime()
    return run_call(runtime, job_id, modal.current_function_call_id())


def run_cleanup(runtime: Runtime, executor: ModalExecutor) -> dict[str, Any]:
    """The scheduled pass: supervise Modal jobs once (no web container may be up), then
    run capability `cleanup` as a job of its own when one is registered."""
    from common.capabilities import registered
    from common.jobs.runner import run_job
    from common.jobs.service import validated_params

    executor.sweep()
    if CLEANUP_CAPABILITY not in registered():
        return {"swept": True, "cleanup": None}
    job = runtime.jobs.create(
        function=CLEANUP_CAPABILITY,
        params=validated_params(CLEANUP_CAPABILITY, {}),
        executor=executor.name,
        name="scheduled cleanup",
        tags=["scheduled"],
    )
    status = run_job(job.id, runtime, handle=modal.current_function_call_id())
    return {"swept": True, "cleanup": str(job.id), "status": status.value if status else None}


# -- the functions -----------------------------------------------------------------------


def function_options(capability: Capability[Any, Any]) -> dict[str, Any]:
    """`@app.function` arguments for a capability, straight from its declaration."""
    resources = capability.resources
    return {
        "image": gpu_image if resources.gpu else cpu_image,
        "secrets": secrets,
        "gpu": resources.gpu,
        "volumes": {KERNEL_CACHE_PATH: kernel_cache} if resources.gpu else {},
        "cpu": resources.cpu,
        "memory": resources.memory_mib,
        "timeout": resources.timeout_s,
        "retries": resources.retries,
        "max_containers": resources.max_containers,
    }


def _capability_function(capability: Capability[Any, Any]) -> modal.Function[Any, Any, Any]:
    """A module-level function named `cap_<name>`, registered with the app: Modal finds
    it in the container by that name when it imports this module again."""
    name = function_name(capability.name)

    def body(job_id: str) -> str | None:
        return _run(job_id)

    body.__name__ = body.__qualname__ = name
    body.__doc__ = f"Runs one attempt of a {capability.name!r} job."
    function = app.function(**function_options(capability))(body)
    globals()[name] = function
    return function


#: capability name -> its Modal function (also a module attribute under `function_name`).
CAPABILITY_FUNCTIONS: dict[str, modal.Function[Any, Any, Any]] = {
    capability.name: _capability_function(capability) for capability in load_capabilities().values()
}


@app.function(image=cpu_image, secrets=secrets, timeout=WEB_TIMEOUT_S)
@modal.concurrent(max_inputs=WEB_MAX_INPUTS)
@modal.asgi_app()
def web() -> Any:
    """The FastAPI app (same factory as `aperture serve`); jobs go to the functions above."""
    from web.app import create_app

    return create_app(Settings())


@app.function(
    image=cpu_image,
    secrets=secrets,
    timeout=CLEANUP_TIMEOUT_S,
    retries=1,
    schedule=modal.Cron(CLEANUP_CRON),
)
def cleanup() -> dict[str, Any]:
    """Scheduled: recover stuck Modal jobs and run capability `cleanup` if registered."""
    runtime, executor = container_runtime()
    return run_cleanup(runtime, executor)
