"""Server-path imports: only regular files under the roots, symlinks resolved first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.errors import Forbidden, InvalidInput, NotFound
from common.imports import resolve_import_path


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "lab"
    (root / "2026").mkdir(parents=True)
    inside = root / "2026" / "stack.tif"
    inside.write_bytes(b"II*\x00")
    outside = tmp_path / "secrets.txt"
    outside.write_text("no")
    (root / "escape").symlink_to(outside)
    (root / "alias.tif").symlink_to(inside)
    return {"root": root, "inside": inside, "outside": outside}


def test_a_file_under_a_root_resolves(tree: dict[str, Path]) -> None:
    assert resolve_import_path(str(tree["inside"]), [tree["root"]]) == tree["inside"].resolve()
    via_link = resolve_import_path(str(tree["root"] / "alias.tif"), [tree["root"]])
    assert via_link == tree["inside"].resolve()


@pytest.mark.parametrize(
    ("make_path", "error", "message"),
    [
        (lambda t: str(t["outside"]), Forbidden, "outside the allowed import roots"),
        (lambda t: str(t["root"] / "escape"), Forbidden, "outside the allowed import roots"),
        (lambda t: str(t["root"] / ".." / "secrets.txt"), Forbidden, "outside"),
        (lambda t: str(t["root"] / "2026"), InvalidInput, "not a regular file"),
        (lambda t: str(t["root"] / "missing.tif"), NotFound, "no file"),
        (lambda t: "relative/stack.tif", InvalidInput, "absolute"),
        (lambda t: str(t["inside"]) + "\x00.png", InvalidInput, "NUL"),
        (lambda t: "", InvalidInput, "non-empty"),
    ],
)
def test_refusals_say_why(tree: dict[str, Path], make_path, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        resolve_import_path(make_path(tree), [tree["root"]])


def test_imports_are_off_without_roots(tree: dict[str, Path]) -> None:
    with pytest.raises(Forbidden, match="disabled"):
        resolve_import_path(str(tree["inside"]), [])


def test_a_symlinked_root_is_resolved_too(tree: dict[str, Path], tmp_path: Path) -> None:
    link_root = tmp_path / "lab-link"
    os.symlink(tree["root"], link_root)
    found = resolve_import_path(str(link_root / "2026" / "stack.tif"), [link_root])
    assert found == tree["inside"].resolve()


def test_outside_the_roots_one_answer_whether_or_not_it_exists(
    tree: dict[str, Path], tmp_path: Path
) -> None:
    """A 403 for an existing path and a 404 for a missing one would let any user map the
    server's disk; a symlink's target would leak too. Every path outside is the same 403."""
    (tree["root"] / "dangling").symlink_to(tmp_path / "no-such-dir" / "x")
    (tree["root"] / "to-etc").symlink_to("/etc")
    paths = {
        "existing": str(tree["outside"]),
        "missing": str(tmp_path / "nothing-here.txt"),
        "missing dir": str(tmp_path / "no-such-dir" / "x"),
        "symlink out": str(tree["root"] / "escape"),
        "dangling symlink out": str(tree["root"] / "dangling"),
        "through a linked dir": str(tree["root"] / "to-etc" / "passwd"),
        "dot-dot": str(tree["root"] / ".." / "secrets.txt"),
    }
    answers = {}
    for label, path in paths.items():
        with pytest.raises(Forbidden) as refused:
            resolve_import_path(path, [tree["root"]])
        answers[label] = refused.value.message.replace(path, "<path>")
        assert str(tree["outside"]) not in refused.value.message or label == "existing"
        assert "resolves" not in refused.value.message
    assert set(answers.values()) == {"<path> is outside the allowed import roots"}, answers
