"""The linters run with the suite: `uv run pytest` (the README's test command, and what
`.ci/run` runs) also runs `ruff check`, `ruff format --check` and `mypy` on the packages,
so the test command and CI can never disagree about them.

mypy keeps its cache in the checkout's `.mypy_cache`: a clean checkout checks everything
(about a minute on two busy cores), later runs only what changed (a few seconds).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The packages the checks cover; `client` joins once it exists.
PACKAGES = [p for p in ("common", "functions", "web", "infra", "client") if (ROOT / p).is_dir()]

CHECKS = {
    "ruff check": ["ruff", "check", "--no-cache"],
    "ruff format": ["ruff", "format", "--check", "--no-cache"],
    "mypy": ["mypy"],
}


def _run(check: str, paths: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a check with this interpreter's tools, from the root (where their config is)."""
    return subprocess.run(
        [sys.executable, "-m", *CHECKS[check], *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )


@pytest.mark.slow
@pytest.mark.parametrize("check", list(CHECKS))
def test_the_packages_pass(check: str) -> None:
    result = _run(check, PACKAGES)
    assert result.returncode == 0, f"{check} failed:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("check", list(CHECKS))
def test_each_check_fails_on_a_bad_file(check: str, tmp_path: Path) -> None:
    """The harness can fail: each check rejects a file with what it looks for."""
    bad = tmp_path / "bad_module.py"
    bad.write_text("import os\n\n\ndef half(x: int) -> str:\n    return x/2\n")
    result = _run(check, [str(bad)])
    assert result.returncode != 0, f"{check} passed a bad file:\n{result.stdout}"
    expected = {"ruff check": "F401", "ruff format": "would be reformatted", "mypy": "return-value"}
    assert expected[check] in result.stdout + result.stderr
