"""Synthetic whole-slide images: an SVS-like pyramidal JPEG TIFF with tissue-like texture.

Every level is built lazily by libvips and written as a tiled JPEG TIFF (libtiff keeps
the JPEG tables apart, as Aperio scanners do); the levels are then copied tile for tile,
without re-encoding, into one Aperio-style BigTIFF that OpenSlide reads as an SVS.
Rendering a 50,000 x 40,000 slide takes well under a minute on two cores because the
texture is a small tile repeated across the slide and the tissue mask is upsampled by
pixel replication, not interpolation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from functions.slides.vips import pyvips as quiet_pyvips

#: The texture block repeated across the slide; its size is a multiple of 4**levels.
TEXTURE_SIZE = 2048
#: Tissue mask resolution: one mask pixel per MASK_STEP x MASK_STEP slide pixels.
MASK_STEP = 16
BACKGROUND = (241, 239, 244)
EOSIN = (232, 150, 190)
HEMATOXYLIN = (92, 62, 150)
MPP = 0.25
APP_MAG = 40


def write_synthetic_slide(
    path: str | Path,
    *,
    width: int,
    height: int,
    tile: int = 256,
    levels: int = 4,
    seed: int = 0,
    quality: int = 80,
) -> Path:
    """Write an SVS-like pyramidal JPEG TIFF with tissue and nuclei-like blobs.

    Parameters
    ----------
    path : str or Path
        Output file (``.svs`` by convention).
    width, height : int
        Level-0 size in pixels.
    tile : int
        Stored tile size (a multiple of 16).
    levels : int
        Pyramid levels, each 4x smaller than the one before.
    seed : int
        Seed of the noise generators; equal seeds give equal slides.
    quality : int
        JPEG quality of the stored tiles.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        If a size is not positive, `tile` is not a multiple of 16 or a level would be
        smaller than one pixel.

    Examples
    --------
    >>> write_synthetic_slide("/tmp/s.svs", width=4096, height=3072, levels=3)  # doctest: +SKIP
    """
    if width < 1 or height < 1 or levels < 1:
        raise ValueError(
            f"width, height and levels must be positive, got {width}x{height}, {levels} levels"
        )
    if tile < 16 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile}")
    if min(width, height) // 4 ** (levels - 1) < 1:
        raise ValueError(f"{levels} levels of 4x make a {width}x{height} slide vanish")
    return write_pyramid(
        path,
        lambda level: _level_image(width, height, 4**level, seed),
        levels=levels,
        tile=tile,
        quality=quality,
        mpp=MPP,
        label=f"seed {seed}",
    )


def write_pyramid(
    path: str | Path,
    level_image: Callable[[int], Any],
    *,
    levels: int,
    tile: int = 256,
    quality: int = 80,
    mpp: float = MPP,
    label: str = "",
) -> Path:
    """Write an Aperio-style pyramidal BigTIFF (an SVS OpenSlide reads) from level images.

    Parameters
    ----------
    path : str or Path
        Output file (``.svs`` by convention).
    level_image : callable
        ``level_image(level)`` returns the slide at ``1 / 4**level`` as an RGB
        ``pyvips.Image`` (lazy images stream: no level is held in memory whole).
    levels : int
        Pyramid levels, each 4x smaller than the one before.
    tile : int
        Stored tile size (a multiple of 16).
    quality : int
        JPEG quality of the stored tiles, below 90: libvips stops subsampling chroma
        at 90, and the assembled TIFF declares 2x2 subsampling (OpenSlide would show
        false colours).
    mpp : float
        Microns per level-0 pixel, recorded as the Aperio ``MPP`` property.
    label : str
        Free text recorded in the image description (e.g. the generator's seed).

    Returns
    -------
    Path
        The written file.
    """
    if not 1 <= quality < 90:
        raise ValueError(f"quality must be in [1, 90), got {quality}")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="aperture-synth-") as tmp:
        parts = []
        size = (0, 0)
        for level in range(levels):
            image = level_image(level)
            if level == 0:
                size = (image.width, image.height)
            part = Path(tmp) / f"level{level}.tif"
            image.tiffsave(
                str(part),
                tile=True,
                tile_width=tile,
                tile_height=tile,
                compression="jpeg",
                Q=quality,
                bigtiff=True,
                strip=True,
            )
            parts.append(part)
        thumb = level_image(levels - 1).thumbnail_image(768)
        _assemble(path, parts, thumb, size, tile, quality, mpp, label)
    return path


def _texture(size: int, seed: int) -> Any:
    """A size x size RGB block of stained tissue with nuclei-like blobs, in memory."""
    pyvips = quiet_pyvips()

    scale = TEXTURE_SIZE / size
    coarse = pyvips.Image.perlin(size, size, cell_size=max(2, round(64 / scale)), seed=seed)
    fine = pyvips.Image.perlin(size, size, cell_size=max(2, round(16 / scale)), seed=seed + 1)
    shade = coarse * 0.6 + fine * 0.4
    cells = pyvips.Image.worley(size, size, cell_size=max(2, round(28 / scale)), seed=seed + 2)
    nuclei = (cells < 5 / scale).ifthenelse(255, 0).cast("uchar")
    if scale < 8:
        nuclei = nuclei.gaussblur(max(0.4, 1.2 / scale))
    base = pyvips.Image.black(size, size, bands=3)
    tissue = (base + list(EOSIN) + shade * [18, 30, 22]).cast("uchar")
    stain = (base + list(HEMATOXYLIN) + shade * [10, 10, 10]).cast("uchar")
    return nuclei.ifthenelse(stain, tissue, blend=True).copy_memory()


def _level_image(width: int, height: int, downsample: int, seed: int) -> Any:
    """The whole slide at 1/downsample, built lazily from the repeated texture block."""
    pyvips = quiet_pyvips()

    w, h = max(1, width // downsample), max(1, height // downsample)
    block = max(1, TEXTURE_SIZE // downsample)
    texture = _texture(block, seed).replicate(w // block + 1, h // block + 1).crop(0, 0, w, h)
    step = max(1, MASK_STEP // downsample)
    mw, mh = -(-width // MASK_STEP), -(-height // MASK_STEP)
    # The mask is drawn at a fixed level-0 scale so every level shows the same tissue.
    tiny = pyvips.Image.perlin(max(2, mw // 32), max(2, mh // 32), cell_size=8, seed=seed + 3)
    mask = ((tiny + 0.05) * 1200).cast("uchar").resize(32, kernel="linear").gaussblur(2)
    mask = mask.embed(0, 0, mw, mh, extend="copy").copy_memory()
    if downsample > MASK_STEP:
        mask = mask.resize(MASK_STEP / downsample, kernel="linear")
    mask = mask.zoom(step, step).embed(0, 0, w, h, extend="copy").crop(0, 0, w, h)
    background = (pyvips.Image.black(block, block, bands=3) + list(BACKGROUND)).cast("uchar")
    background = background.copy_memory().replicate(w // block + 1, h // block + 1)
    return mask.ifthenelse(texture, background.crop(0, 0, w, h), blend=True)


def _assemble(
    path: Path,
    parts: list[Path],
    thumb: Any,
    dimensions: tuple[int, int],
    tile: int,
    quality: int,
    mpp: float,
    label: str,
) -> None:
    """Copy each level's stored JPEG tiles into one Aperio-style BigTIFF."""
    import numpy as np
    import tifffile

    width, height = dimensions
    head = f"Aperio Image Library v12.0.0 (Aperture synthetic, {label})\r\n"
    app_mag = round(APP_MAG * MPP / mpp)  # objective magnification scales with resolution
    props = f"|AppMag = {app_mag}|MPP = {mpp}|ScanScope ID = SYNTHETIC|Filename = {path.stem}"
    thumb_pixels = np.ndarray(
        buffer=thumb.write_to_memory(),
        dtype=np.uint8,
        shape=(thumb.height, thumb.width, thumb.bands),
    )
    with tifffile.TiffWriter(path, bigtiff=True) as out:
        for level, part in enumerate(parts):
            with tifffile.TiffFile(part) as src:
                page = src.pages.first
                size = (
                    f"{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) JPEG/RGB Q={quality}"
                )
                if level:
                    size = f"{width}x{height} -> {page.imagewidth}x{page.imagelength}"
                tiles = _raw_tiles(src, page)
                tables = page.jpegtables or b""
                out.write(
                    tiles,
                    shape=page.shape,
                    dtype=np.uint8,
                    tile=(tile, tile),
                    compression=7,
                    photometric="ycbcr",
                    subsampling=(2, 2),
                    description=head + size + props,
                    metadata=None,
                    extratags=[(347, 7, len(tables), tables, True)] if tables else [],
                )
            if level == 0:
                out.write(
                    thumb_pixels,
                    photometric="rgb",
                    metadata=None,
                    description=head + f"{width}x{height} -> {thumb.width}x{thumb.height}",
                )
        # OpenSlide 4 names Aperio associated images by NewSubfileType: 1 label, 9 macro.
        for name, colour, subfile in (("label", (250, 250, 250), 1), ("macro", (200, 200, 210), 9)):
            pixels = np.full((200, 400 if name == "macro" else 200, 3), colour, np.uint8)
            out.write(
                pixels,
                photometric="rgb",
                metadata=None,
                subfiletype=subfile,
                description=f"{head}{name} {pixels.shape[1]}x{pixels.shape[0]}",
            )


def _raw_tiles(src: Any, page: Any) -> Any:
    fh = src.filehandle
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
        fh.seek(offset)
        yield fh.read(count)
