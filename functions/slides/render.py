"""Render Deep Zoom tiles: read at the best slide level, resize, encode.

The tile geometry is `DeepZoomGenerator`'s (see geometry.py); the work differs:

- pixels come from the slide's stored tiles through `TiffPyramid` (pread + libjpeg-turbo,
  decoded tiles cached) where the slide allows, else from OpenSlide's `read_region`;
- resizing by less than 4x uses libvips Lanczos-3 (several times faster than Pillow's
  Lanczos at these factors, within half a grey level of it); larger factors use Pillow
  itself, which box-reduces first and is then cheap;
- JPEG is encoded by libjpeg-turbo through imagecodecs, 4:2:0 like Pillow;
- a tile that is exactly a stored JPEG tile (overlap 0, tile size equal to the stored
  tile, same level, no scaling, not cut by the slide's edge) is sent as the stored bytes,
  tables merged in, without decoding.
"""

from __future__ import annotations

import numpy as np

from functions.slides.geometry import DeepZoomGeometry, Size, TileRead
from functions.slides.handles import SlideHandle

MEDIA_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png"}
#: From this shrink factor on Pillow (box-reduce, then Lanczos) is as fast as libvips.
PIL_MIN_FACTOR = 4
#: Images this small are resized by Pillow whatever the factor.
PIL_MAX_AREA = 128 * 128


def passthrough_tile(
    handle: SlideHandle, geometry: DeepZoomGeometry, level: int, col: int, row: int
) -> bytes | None:
    """The stored JPEG bytes of a tile that coincides with a stored tile, else None."""
    tiff = handle.tiff
    if tiff is None or geometry.overlap != 0:
        return None
    read = geometry.tile(level, col, row)
    stored = tiff.levels[read.level]
    ts = geometry.tile_size
    if (
        geometry.l_z_downsamples[level] != 1.0
        or stored.tile_width != ts
        or stored.tile_height != ts
        or read.size != (ts, ts)
        or read.z_size != (ts, ts)
    ):
        return None
    ds = handle.level_downsamples[read.level]
    x, y = read.location[0] / ds, read.location[1] / ds
    if x != col * ts or y != row * ts:
        return None
    if (col + 1) * ts > stored.width or (row + 1) * ts > stored.height:
        return None
    return tiff.jpeg_tile(read.level, col, row)


def tile_pixels(handle: SlideHandle, read: TileRead) -> np.ndarray:
    """The (height, width, 3) uint8 pixels of one Deep Zoom tile, at its final size."""
    pixels = handle.read(read)
    if read.needs_resize:
        pixels = resize(pixels, read.out_size)
    return pixels


def resize(pixels: np.ndarray, size: Size) -> np.ndarray:
    """Scale (h, w, 3) uint8 pixels to `size` = (width, height) with libvips Lanczos-3."""
    height, width = pixels.shape[:2]
    data = np.ascontiguousarray(pixels)
    if min(width / size[0], height / size[1]) >= PIL_MIN_FACTOR or width * height <= PIL_MAX_AREA:
        # Pillow box-reduces first at large factors, so it is cheap there, and on small
        # images its exact filter matters more than speed (37 x 31 -> 10 x 8).
        from PIL import Image

        image = Image.fromarray(data).resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
        return np.asarray(image)
    from functions.slides.vips import pyvips

    vips = pyvips()
    image = vips.Image.new_from_memory(data.data, width, height, data.shape[2], "uchar")
    # Operation.call, not image.resize: the attribute lookup first asks libvips for an
    # image property of that name, and builds an error when there is none
    out = vips.Operation.call(
        "resize", image, size[0] / width, vscale=size[1] / height, kernel="lanczos3"
    )
    if (out.width, out.height) != size:  # a rounding pixel short or over
        out = out.embed(
            0, 0, max(size[0], out.width), max(size[1], out.height), extend="copy"
        ).crop(0, 0, *size)
    return np.ndarray(
        buffer=out.write_to_memory(), dtype=np.uint8, shape=(size[1], size[0], data.shape[2])
    )


def encode(pixels: np.ndarray, fmt: str, quality: int = 75) -> bytes:
    """JPEG (4:2:0, like Pillow's default) or PNG bytes of (h, w, 3) uint8 pixels."""
    import imagecodecs

    if fmt == "jpeg":
        return bytes(imagecodecs.jpeg8_encode(pixels, level=quality, subsampling="420"))
    if fmt == "png":
        return bytes(imagecodecs.png_encode(pixels, level=6))
    raise ValueError(f"tile format must be 'jpeg' or 'png', got {fmt!r}")


def render_tile(
    handle: SlideHandle,
    geometry: DeepZoomGeometry,
    level: int,
    col: int,
    row: int,
    *,
    fmt: str = "jpeg",
    quality: int = 75,
) -> bytes:
    """Encoded bytes of Deep Zoom tile (level, col, row); raises NotFound when out of range."""
    if fmt == "jpeg":
        stored = passthrough_tile(handle, geometry, level, col, row)
        if stored is not None:
            return stored
    return encode(tile_pixels(handle, geometry.tile(level, col, row)), fmt, quality)
