"""Slide metadata: what a `slides` record holds, read without touching pixel data
except for one small probe read that proves the pixels decode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.errors import UnsupportedFile
from functions.slides.handles import open_openslide


class AssociatedImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    width: int
    height: int


class Bounds(BaseModel):
    """The non-empty region of the slide in level-0 pixels (OpenSlide's bounds-*)."""

    model_config = ConfigDict(frozen=True)

    x: int
    y: int
    width: int
    height: int


class SlideInfo(BaseModel):
    """Everything a slide record needs, as OpenSlide reports it."""

    model_config = ConfigDict(frozen=True)

    vendor: str | None = Field(description="OpenSlide vendor: aperio, generic-tiff, ...")
    width: int
    height: int
    level_count: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    tile_width: int | None = Field(None, description="Stored tile width of level 0.")
    tile_height: int | None = None
    mpp_x: float | None = Field(None, description="Microns per pixel across, level 0.")
    mpp_y: float | None = None
    objective_power: float | None = None
    bounds: Bounds | None = None
    background_color: str = "ffffff"
    quickhash: str | None = Field(None, description="OpenSlide's quickhash-1: content identity.")
    properties: dict[str, str]
    associated_images: list[AssociatedImage]


def _float(properties: dict[str, str], name: str) -> float | None:
    try:
        return float(properties[name])
    except (KeyError, ValueError):
        return None


def _int(properties: dict[str, str], name: str) -> int | None:
    value = _float(properties, name)
    return int(value) if value is not None else None


def _bounds(properties: dict[str, str]) -> Bounds | None:
    values = [_int(properties, f"openslide.bounds-{n}") for n in ("x", "y", "width", "height")]
    if any(v is None for v in values):
        return None
    x, y, w, h = values
    return Bounds(x=x, y=y, width=w, height=h)  # type: ignore[arg-type]


def probe(osr: Any, name: str) -> None:
    """Read one small region of the smallest level: a slide whose header parses but
    whose pixel data does not decode fails here, not later in the viewer."""
    import openslide

    level = osr.level_count - 1
    width, height = osr.level_dimensions[level]
    try:
        osr.read_region((0, 0), level, (min(width, 256), min(height, 256)))
    except openslide.OpenSlideError as exc:
        raise UnsupportedFile(
            f"{name} opens as a slide but its pixel data cannot be read: {exc}"
        ) from None


def read_slide_info(path: str | Path, *, check_pixels: bool = True) -> SlideInfo:
    """Metadata of the whole-slide image at `path`.

    Parameters
    ----------
    path : str or Path
        A file OpenSlide reads (SVS, generic tiled TIFF, NDPI, MRXS, SCN, DICOM WSI, ...).
    check_pixels : bool
        Probe-read a small region (and each associated image) so unreadable pixel data
        is reported now.

    Returns
    -------
    SlideInfo

    Raises
    ------
    UnsupportedFile
        If the file is not a slide OpenSlide can open, or (with `check_pixels`) its pixel
        data cannot be decoded. The message names the file and the reason.
    """
    import openslide

    name = Path(path).name
    osr = open_openslide(path)
    try:
        props = dict(osr.properties)
        if check_pixels:
            probe(osr, name)
        associated = []
        for assoc in osr.associated_images.keys():  # noqa: SIM118 (a lazy mapping)
            w = _int(props, f"openslide.associated.{assoc}.width")
            h = _int(props, f"openslide.associated.{assoc}.height")
            if w is None or h is None or check_pixels:
                try:
                    w, h = osr.associated_images[assoc].size
                except openslide.OpenSlideError as exc:
                    raise UnsupportedFile(
                        f"{name}: the {assoc} image cannot be read: {exc}"
                    ) from None
            associated.append(AssociatedImage(name=assoc, width=w, height=h))
        width, height = osr.dimensions
        return SlideInfo(
            vendor=props.get("openslide.vendor"),
            width=width,
            height=height,
            level_count=osr.level_count,
            level_dimensions=[tuple(d) for d in osr.level_dimensions],
            level_downsamples=list(osr.level_downsamples),
            tile_width=_int(props, "openslide.level[0].tile-width"),
            tile_height=_int(props, "openslide.level[0].tile-height"),
            mpp_x=_float(props, "openslide.mpp-x"),
            mpp_y=_float(props, "openslide.mpp-y"),
            objective_power=_float(props, "openslide.objective-power"),
            bounds=_bounds(props),
            background_color=props.get("openslide.background-color", "ffffff"),
            quickhash=props.get("openslide.quickhash-1"),
            properties=props,
            associated_images=associated,
        )
    except openslide.OpenSlideError as exc:
        raise UnsupportedFile(f"{name} cannot be read as a slide: {exc}") from None
    finally:
        osr.close()
