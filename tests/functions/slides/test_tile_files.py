"""Rendered tiles shared through the data directory (`TileFiles`): what one tile service
renders another serves without rendering; bounded; a deleted slide's tiles go."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from functions.slides.service import SlideTiles, TileSettings, settings_tag
from functions.slides.tile_files import TileFiles


def _shared(root: Path, settings: TileSettings, max_bytes: int = 1 << 20) -> SlideTiles:
    return SlideTiles(settings, files=TileFiles(root / settings_tag(settings), max_bytes))


def test_a_tile_rendered_by_one_service_is_served_by_another(
    synthetic: Path, tmp_path: Path
) -> None:
    settings = TileSettings(cache_bytes=0)  # nothing kept in memory: the files must answer
    first, second = _shared(tmp_path, settings), _shared(tmp_path, settings)
    top = first.descriptor("s", synthetic).level_count - 1
    rendered = first.tile("s", synthetic, top, 1, 1, "jpeg")
    served = second.tile("s", synthetic, top, 1, 1, "jpeg")
    assert (served.content, served.etag, served.media_type) == (
        rendered.content,
        rendered.etag,
        rendered.media_type,
    )
    assert second.handles.opens == 0  # the slide was never opened: nothing rendered
    assert second.files is not None and second.files.hits == 1
    png = second.tile("s", synthetic, top, 1, 1, "png")  # another format is another tile
    assert png.content.startswith(b"\x89PNG") and second.handles.opens == 1


def test_other_tile_settings_never_read_these_tiles(synthetic: Path, tmp_path: Path) -> None:
    made = _shared(tmp_path, TileSettings(cache_bytes=0, quality=75))
    other = _shared(tmp_path, TileSettings(cache_bytes=0, quality=90))
    top = made.descriptor("s", synthetic).level_count - 1
    ours = made.tile("s", synthetic, top, 0, 0, "jpeg")
    theirs = other.tile("s", synthetic, top, 0, 0, "jpeg")
    assert theirs.etag != ours.etag and other.handles.opens == 1


def test_a_deleted_slide_leaves_no_tiles(synthetic: Path, tmp_path: Path) -> None:
    settings = TileSettings(cache_bytes=0)
    tiles, other = _shared(tmp_path, settings), _shared(tmp_path, settings)
    top = tiles.descriptor("s", synthetic).level_count - 1
    tiles.tile("s", synthetic, top, 0, 0, "jpeg")
    tiles.evict("s")
    assert not (tmp_path / settings_tag(settings) / "s").exists()
    other.tile("s", synthetic, top, 0, 0, "jpeg")
    assert other.handles.opens == 1  # rendered again


def test_a_file_that_is_not_a_whole_tile_is_never_served(tmp_path: Path) -> None:
    files = TileFiles(tmp_path, 1 << 20)
    files.put("s", 3, 0, 0, "jpeg", b"\xff\xd8 tile", '"' + "a" * 32 + '"')
    assert files.get("s", 3, 0, 0, "jpeg") == (b"\xff\xd8 tile", '"' + "a" * 32 + '"')
    (tmp_path / "s" / "3" / "0_0.jpeg").write_bytes(b"\xff\xd8 torn")
    assert files.get("s", 3, 0, 0, "jpeg") is None
    assert files.get("s", 3, 1, 0, "jpeg") is None
    assert not [p for p in (tmp_path / "s" / "3").iterdir() if p.name.startswith(".")]


def test_the_cache_stays_within_its_budget_oldest_out_first(tmp_path: Path) -> None:
    files = TileFiles(tmp_path, 10_000, prune_every=1 << 40)  # prune only when told
    etag = '"' + "b" * 32 + '"'
    folder = tmp_path / "s" / "9"
    for n in range(30):
        files.put("s", 9, n, 0, "jpeg", bytes(1000), etag)
        os.utime(folder / f"{n}_0.jpeg", (n, n))  # distinct ages, oldest first
    assert files.prune() > 0
    kept = sorted(int(p.name.split("_")[0]) for p in folder.iterdir())
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 10_000 * 3 // 4
    assert kept == list(range(30 - len(kept), 30)) and kept  # the newest stayed
    assert files.prune() == 0  # within the budget: nothing to do


def test_writing_prunes_in_the_background(tmp_path: Path) -> None:
    files = TileFiles(tmp_path, 10_000)
    etag = '"' + "c" * 32 + '"'
    for n in range(100):
        files.put("s", 9, n, 0, "jpeg", bytes(1000), etag)
    for thread in threading.enumerate():
        if thread.name == "tile-files-prune":
            thread.join()
    stored = sum(p.stat().st_size for p in (tmp_path / "s" / "9").iterdir())
    # 103,500 bytes written; the budget plus what was written after the last pruning's look
    assert stored < 30_000


def test_a_budget_of_nothing_keeps_nothing(tmp_path: Path) -> None:
    etag = '"' + "c" * 32 + '"'
    nothing = TileFiles(tmp_path / "off", 0)
    nothing.put("s", 9, 0, 0, "jpeg", bytes(10), etag)
    assert nothing.get("s", 9, 0, 0, "jpeg") is None and not (tmp_path / "off").exists()
