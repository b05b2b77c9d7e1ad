"""Synthetic H&E whole-slide images with ground truth (`aperture demo-data he-slide`).

Pink stroma, white background outside tissue islands, purple nuclei of varied size,
shape and stain, touching clusters, nuclei anywhere (so across any tile grid). Pixels
follow Beer-Lambert with the H&E stain vectors the detector deconvolves with. Level 0 is
rendered in strips of rows into a raw file (memory: one strip, whatever the slide
size), then `functions.slides.synthetic.write_pyramid` turns it into a pyramidal SVS.
The truth JSON lists every nucleus: centroid, outline and area (level-0 pixels, um^2).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from functions.inference.stains import EOSIN, HEMATOXYLIN
from functions.inference.synthetic_layout import MASK_DOWNSAMPLE, Layout, plan_layout
from functions.slides.vips import pyvips as quiet_pyvips

MPP = 0.5
STRIP = 512
MARGIN = 8  # rows rendered beyond a strip so blurs agree across strip seams
TEXTURE = 512  # side of the periodic noise tiles
WHITE = np.array([244.0, 242.0, 246.0])


def write_he_slide(
    path: str | Path,
    *,
    width: int,
    height: int,
    seed: int = 0,
    tile: int = 256,
    levels: int | None = None,
    quality: int = 85,
    truth_path: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write a pyramidal H&E-like SVS at 0.5 um/px and its ground-truth JSON.

    Parameters
    ----------
    path : str or Path
        The slide (``.svs``).
    width, height : int
        Level-0 size in pixels (at least 64 each).
    seed : int
        Equal seeds give equal slides and truth.
    tile : int
        Stored tile size.
    levels : int, optional
        Pyramid levels (4x each); default: down to about 512 pixels.
    quality : int
        JPEG quality of the stored tiles.
    truth_path : str or Path, optional
        Where the truth goes; default ``<path stem>.truth.json`` beside the slide.

    Returns
    -------
    (Path, Path)
        The slide and the truth file.

    Examples
    --------
    >>> write_he_slide("/tmp/he.svs", width=2048, height=2048)  # doctest: +SKIP
    """
    pyvips = quiet_pyvips()

    from functions.slides.synthetic import write_pyramid

    path = Path(path)
    truth = Path(truth_path) if truth_path else path.with_name(path.stem + ".truth.json")
    layout = plan_layout(width, height, seed)
    if levels is None:
        levels = 1
        while max(width, height) // 4**levels >= 512:
            levels += 1
    with tempfile.TemporaryDirectory(prefix="aperture-he-") as tmp:
        raw = Path(tmp) / "level0.raw"
        render_level0(layout, raw, seed)
        base = pyvips.Image.rawload(str(raw), width, height, 3)
        # multiband, as the project's other levels: libvips then stores the JPEG tiles
        # in the YCbCr the assembled TIFF declares.
        base = base.copy(interpretation="multiband")
        write_pyramid(
            path,
            lambda level: base if level == 0 else base.shrink(4**level, 4**level),
            levels=levels,
            tile=tile,
            quality=quality,
            mpp=MPP,
            label=f"H&E seed {seed}",
        )
    with truth.open("w") as out:
        write_truth(layout, out, seed=seed)
    return path, truth


def render_level0(layout: Layout, raw: Path, seed: int) -> None:
    """Render level 0 strip by strip into a raw (H, W, 3) uint8 file."""
    textures = _textures(seed)
    boxes = np.array([[o[:, 1].min(), o[:, 1].max()] for o in layout.outlines]).reshape(-1, 2)
    order = np.argsort(boxes[:, 0], kind="stable")
    with raw.open("wb") as out:
        for y0 in range(0, layout.height, STRIP):
            y1 = min(layout.height, y0 + STRIP)
            lo, hi = y0 - MARGIN - 32, y1 + MARGIN
            first = np.searchsorted(boxes[order, 0], lo)
            last = np.searchsorted(boxes[order, 0], hi)
            near = [int(i) for i in order[first:last] if boxes[i, 1] >= y0 - MARGIN]
            out.write(render_strip(layout, y0, y1, near, textures, seed).tobytes())


def _textures(seed: int) -> np.ndarray:
    """Three periodic smooth noise tiles in [-1, 1] (stroma, stroma hematoxylin,
    chromatin) and one of pixel noise (sigma 1), float32."""
    from scipy import ndimage

    rng = np.random.default_rng(seed + 7919)
    tiles = []
    for sigma in (6.0, 3.0, 1.2):
        t = ndimage.gaussian_filter(rng.standard_normal((TEXTURE, TEXTURE)), sigma, mode="wrap")
        tiles.append(t / (np.abs(t).max() + 1e-9))
    tiles.append(rng.standard_normal((TEXTURE, TEXTURE)))
    return np.stack(tiles).astype(np.float32)


def _periodic(texture: np.ndarray, rows: np.ndarray, width: int, shift: int = 0) -> np.ndarray:
    """`texture` laid over rows `rows` and columns [shift, shift + width) (np.tile, not
    a gather: a strip is 20,000 pixels wide)."""
    block = texture[rows % TEXTURE]
    reps = -(-(width + shift) // TEXTURE)
    return np.tile(block, (1, reps))[:, shift : shift + width]  # type: ignore[no-any-return]


def render_strip(
    layout: Layout, y0: int, y1: int, nuclei: list[int], textures: np.ndarray, seed: int
) -> np.ndarray:
    """Rows [y0, y1) of level 0 as (y1 - y0, W, 3) uint8."""
    from scipy import ndimage
    from skimage.draw import polygon

    top = y0 - MARGIN
    rows, width = y1 - y0 + 2 * MARGIN, layout.width
    ys = np.clip(np.arange(top, top + rows), 0, layout.height - 1)
    # Soft tissue edges: the mask blurred at its own resolution, then replicated.
    mask_rows = np.unique(ys // MASK_DOWNSAMPLE)
    lo, hi = max(0, mask_rows[0] - 2), min(layout.tissue.shape[0], mask_rows[-1] + 3)
    soft = ndimage.gaussian_filter(layout.tissue[lo:hi].astype(np.float32), 0.5)
    tissue = np.repeat(soft[ys // MASK_DOWNSAMPLE - lo], MASK_DOWNSAMPLE, axis=1)[:, :width]
    eosin = tissue * (0.32 + 0.14 * _periodic(textures[0], ys, width))
    hema = tissue * (0.07 + 0.04 * _periodic(textures[1], ys, width))
    owner = np.zeros((rows, width), np.int32)  # 1 + index of the nucleus drawn last
    for i in nuclei:
        outline = layout.outlines[i]
        rr, cc = polygon(outline[:, 1] - top, outline[:, 0], (rows, width))
        owner[rr, cc] = i + 1
    inside = owner > 0
    stain = np.concatenate([[0.0], layout.stain]).astype(np.float32)
    chromatin = 1 + 0.12 * _periodic(textures[2], ys, width)
    hema[inside] = (stain[owner] * chromatin)[inside]
    eosin[inside] = 0.12
    hema = ndimage.gaussian_filter(hema, 0.7)  # soft nuclear edges
    rgb = np.empty((rows, width, 3), np.float32)
    shift = int(np.random.default_rng((seed, y0)).integers(0, TEXTURE))
    noise = 2.0 * _periodic(textures[3], ys, width, shift)
    for c, (h, e) in enumerate(zip(_unit(HEMATOXYLIN), _unit(EOSIN), strict=True)):
        channel = np.exp(-(hema * h + eosin * e)) * np.float32(WHITE[c])
        channel += noise
        rgb[..., c] = channel
    np.clip(rgb, 0, 255, out=rgb)
    return (rgb[MARGIN:-MARGIN] + 0.5).astype(np.uint8)  # type: ignore[no-any-return]


def _unit(vector: tuple[float, float, float]) -> np.ndarray:
    v = np.asarray(vector, np.float32)
    return v / np.linalg.norm(v)  # type: ignore[no-any-return]


def truth_records(layout: Layout) -> list[dict[str, Any]]:
    """One record per nucleus: id, centroid, outline, area (pixels and um^2), radius."""
    records = []
    for i, outline in enumerate(layout.outlines):
        x, y = outline[:, 0], outline[:, 1]
        cross = x * np.roll(y, -1) - np.roll(x, -1) * y
        area = cross.sum() / 2
        cx = ((x + np.roll(x, -1)) * cross).sum() / (6 * area)
        cy = ((y + np.roll(y, -1)) * cross).sum() / (6 * area)
        records.append(
            {
                "id": i,
                "centroid": [round(float(cx), 2), round(float(cy), 2)],
                "outline": np.round(outline, 2).tolist(),
                "area_px": round(float(abs(area)), 2),
                "area_um2": round(float(abs(area)) * MPP * MPP, 3),
                "equivalent_radius_px": round(float(np.sqrt(abs(area) / np.pi)), 3),
            }
        )
    return records


def write_truth(layout: Layout, out: IO[str], *, seed: int) -> None:
    """The truth JSON, written nucleus by nucleus (it can be large)."""
    tissue_mm2 = float(layout.tissue.sum()) * (MASK_DOWNSAMPLE * MPP / 1000) ** 2
    head = {
        "generator": "aperture he-slide",
        "seed": seed,
        "width": layout.width,
        "height": layout.height,
        "mpp": MPP,
        "tissue_area_mm2": round(tissue_mm2, 4),
        "count": len(layout.outlines),
    }
    out.write(json.dumps(head)[:-1] + ', "nuclei": [')
    for i, record in enumerate(truth_records(layout)):
        out.write(("," if i else "") + "\n" + json.dumps(record))
    out.write("\n]}\n")
