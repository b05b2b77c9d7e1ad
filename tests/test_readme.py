"""The README's examples run as written, against `aperture serve`.

A `sh` block is run when an HTML comment `<!-- readme-test: NAME -->` stands right
before it. The marked blocks run in README order in one bash session (`-euo pipefail`),
as a reader pastes them into one terminal, in an empty folder, with these stand-ins:

- the server is a fresh `aperture serve` on a free port: `http://127.0.0.1:8000` in the
  text becomes its URL;
- `uv run CMD` runs CMD from this checkout's environment (where `uv run` in the
  checkout would find it), and the user verbs (`aperture login`, ...) are on PATH;
- HOME and the config folder are the test's own (`aperture login` saves there).

A line whose comment ends `# -> TEXT` says what it prints: TEXT must be a line of that
block's output. Each block must also pass its checks in CHECKS below.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.app import REPO, LiveServer

README = REPO / "README.md"
MARKED = re.compile(r"<!-- readme-test: (?P<name>[\w-]+) -->\n```sh\n(?P<code>.*?)\n```", re.S)
EXPECTED = re.compile(r"#\s*->\s*(?P<text>.+?)\s*$")
README_URL = "http://127.0.0.1:8000"
SEPARATOR = "::readme-block {}::"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("curl") and shutil.which("jq")), reason="the examples use curl and jq"
    ),
]


def marked_blocks(text: str) -> list[tuple[str, str]]:
    """(name, code) of every block marked for testing, in order."""
    return [(m.group("name"), m.group("code")) for m in MARKED.finditer(text)]


def expectations(code: str) -> list[str]:
    """What the block's `# -> TEXT` comments say it prints."""
    return [m.group("text") for line in code.splitlines() if (m := EXPECTED.search(line))]


def _results(folder: Path) -> None:
    result = json.loads((folder / "results" / "timelapse.ome.tif" / "result.json").read_text())
    assert result["kind"] == "microscopy" and result["metadata"]["n_fovs"] == 2


def _viewport(folder: Path) -> None:
    nuclei = int((folder / "viewport.txt").read_text())
    assert 20 < nuclei < 400, f"{nuclei} nuclei in a 512 x 512 viewport"


#: Checks beyond the `# -> ` lines: (block output, working folder) -> assertions.
CHECKS: dict[str, Callable[[str, Path], None]] = {
    "sign-in": lambda out, folder: None,
    "first-job": lambda out, folder: None,
    "slide": lambda out, folder: None,
    "cli": lambda out, folder: (
        None
        if re.search(r"^\S+ succeeded$", out, re.M) and "signed in to" in out
        else pytest.fail(f"cli: no succeeded job or sign-in in\n{out}")
    ),
    "batch": lambda out, folder: _results(folder),
    "inference": lambda out, folder: _viewport(folder),
}


def test_the_marked_blocks_are_the_ones_checked() -> None:
    """A new marked block needs its check here; every check has its block."""
    names = [name for name, _ in marked_blocks(README.read_text())]
    assert names == list(CHECKS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("readme") / "data").start()
    try:
        yield live
    finally:
        live.stop()


def _session(folder: Path, server: LiveServer) -> dict[str, str]:
    """The environment of the reader's shell (see the module docstring)."""
    shims = folder / ".shims"
    shims.mkdir()
    uv = shims / "uv"
    uv.write_text('#!/bin/sh\nif [ "$1" = run ]; then shift; exec "$@"; fi\nexec uv-real "$@"\n')
    uv.chmod(0o755)
    if real := shutil.which("uv"):
        (shims / "uv-real").symlink_to(real)
    venv_bin = Path(sys.executable).parent  # this checkout's environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    env |= {
        "PATH": os.pathsep.join([str(shims), str(venv_bin), env.get("PATH", "")]),
        "HOME": str(folder / "home"),
        "XDG_CONFIG_HOME": str(folder / "home" / ".config"),
        "XDG_STATE_HOME": str(folder / "home" / ".state"),
        "APERTURE_DATA_DIR": str(server.data_dir),  # server verbs see the same server
    }
    return env


def test_the_readme_examples_run_as_written(server: LiveServer, tmp_path: Path) -> None:
    blocks = marked_blocks(README.read_text())
    script = ["trap 'echo \"failed: line $LINENO: $BASH_COMMAND\" >&2' ERR"]
    for name, code in blocks:
        script += [f"echo '{SEPARATOR.format(name)}'", code.replace(README_URL, server.url)]
    (tmp_path / "home").mkdir()
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=_session(tmp_path, server),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, f"{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}"
    outputs = re.split(r"^::readme-block ([\w-]+)::$", ran.stdout, flags=re.M)[1:]
    by_block = dict(zip(outputs[::2], outputs[1::2], strict=True))
    assert list(by_block) == [name for name, _ in blocks]
    for name, code in blocks:
        lines = [line.strip() for line in by_block[name].splitlines()]
        missing = [text for text in expectations(code) if text not in lines]
        assert missing == [], f"block {name!r} did not print {missing}:\n{by_block[name]}"
        CHECKS[name](by_block[name], tmp_path)
