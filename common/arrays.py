"""One switch between CPU (numpy/scipy) and GPU (cupy/cupyx) arrays.

Kernels take a `Backend` and use `be.xp` and `be.ndimage`, so each kernel is written
once. `device="auto"` picks the GPU only when cupy imports and sees a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, Literal

import numpy as np

Device = Literal["cpu", "gpu", "auto"]


@dataclass(frozen=True)
class Backend:
    name: Literal["cpu", "gpu"]
    xp: ModuleType  # numpy | cupy
    ndimage: ModuleType  # scipy.ndimage | cupyx.scipy.ndimage

    def asarray(self, array: Any) -> Any:
        return self.xp.asarray(array)

    def to_numpy(self, array: Any) -> np.ndarray:
        """Host copy of an array of this backend (no copy on the CPU)."""
        return to_host(self.xp, array)

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"


def to_host(xp: ModuleType, array: Any) -> np.ndarray:
    """A host copy of an array of module `xp` (numpy or cupy); no copy for numpy."""
    return array.get() if xp is not np else np.asarray(array)  # type: ignore[no-any-return]


@cache
def gpu_available() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:  # no cupy, no driver, no device: all mean "no GPU here"
        return False


@cache
def _cpu() -> Backend:
    import scipy.ndimage

    return Backend("cpu", np, scipy.ndimage)


@cache
def _gpu() -> Backend:
    import cupy
    import cupyx.scipy.ndimage

    return Backend("gpu", cupy, cupyx.scipy.ndimage)


def get_backend(device: Device = "cpu") -> Backend:
    """The backend for `device`; "gpu" raises RuntimeError when no GPU can be used."""
    if device == "cpu":
        return _cpu()
    if device == "auto":
        return _gpu() if gpu_available() else _cpu()
    if device == "gpu":
        if not gpu_available():
            raise RuntimeError("device='gpu' was asked for but no CUDA GPU with cupy is available")
        return _gpu()
    raise ValueError(f"device must be 'cpu', 'gpu' or 'auto', got {device!r}")
