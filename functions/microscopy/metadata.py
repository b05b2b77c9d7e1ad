"""The one metadata model every microscopy reader fills (ND2, CZI, OME-TIFF, TIFF)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Minutes per unit, for every time unit a file may declare (OME's UnitsTime symbols).
MINUTES_PER: dict[str, float] = {
    "h": 60.0,
    "min": 1.0,
    "s": 1 / 60,
    "ms": 1 / 60_000,
    "µs": 1 / 60_000_000,
    "us": 1 / 60_000_000,
    "ns": 1 / 60_000_000_000,
}

#: Micrometres per unit, for OME's UnitsLength symbols we expect in pixel sizes.
MICROMETRES_PER: dict[str, float] = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "nm": 1e-3,
    "Å": 1e-4,
    "pm": 1e-6,
}


def to_minutes(value: float, unit: str) -> float:
    """`value` in `unit` (an OME time symbol) as minutes; ValueError for unknown units."""
    try:
        return value * MINUTES_PER[unit]
    except KeyError:
        raise ValueError(f"unknown time unit {unit!r}; known: {sorted(MINUTES_PER)}") from None


def to_micrometres(value: float, unit: str) -> float:
    """`value` in `unit` (an OME length symbol) as micrometres."""
    try:
        return value * MICROMETRES_PER[unit]
    except KeyError:
        raise ValueError(
            f"unknown length unit {unit!r}; known: {sorted(MICROMETRES_PER)}"
        ) from None


class ChannelInfo(BaseModel):
    """One channel: its index in the file, name and wavelengths when recorded."""

    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    emission_nm: float | None = None
    excitation_nm: float | None = None


class MicroscopyMetadata(BaseModel):
    """What a microscopy file holds, without its pixels.

    Dimensions are P (FOVs / scenes / positions), T, C, Z, Y, X. ``timepoints`` holds
    one time per frame in ``time_units`` ("min" when the file records time, "frame"
    when it does not, in which case the times are frame indices). The first ten fields
    are the ones PyAMA's frontend reads.
    """

    model_config = ConfigDict(frozen=True)

    base_name: str
    file_type: Literal["nd2", "czi", "ome-tiff", "tiff"]
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    n_frames: int = Field(ge=1)
    n_fovs: int = Field(ge=1)
    n_channels: int = Field(ge=1)
    timepoints: list[float]
    channel_names: list[str]
    dtype: str
    pixel_size_um: float | None = None
    z_step_um: float | None = None
    time_units: Literal["min", "frame"] = "min"
    time_source: Literal["timestamps", "increment", "none"] = "none"
    n_z: int = Field(1, ge=1)
    channels: list[ChannelInfo] = Field(default_factory=list)
    objective: str | None = None
    magnification: float | None = None
    file_path: str | None = None

    @property
    def dims(self) -> dict[str, int]:
        """Sizes by axis letter: P, T, C, Z, Y, X."""
        return {
            "P": self.n_fovs,
            "T": self.n_frames,
            "C": self.n_channels,
            "Z": self.n_z,
            "Y": self.height,
            "X": self.width,
        }
