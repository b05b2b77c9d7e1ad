"""Settings refuse unsafe values instead of warning about them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from common.settings import Settings


def test_embedded_defaults(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'aperture.db'}"
    assert settings.resolved_objects_dir == (tmp_path / "objects").resolve()
    assert settings.executor == "local" and settings.object_store == "dir"


def test_development_secret_is_generated_once_and_shared(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).signing_key
    assert len(first) >= 32 and Settings(data_dir=tmp_path).signing_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"secret_key": "short"},
        {"secret_key": "x" * 40, "cors_origins": ["*"]},
    ],
)
def test_production_refuses_unsafe_values(overrides: dict) -> None:
    with pytest.raises(ValidationError, match="production"):
        Settings(environment="production", **overrides)


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APERTURE_WORKERS", "7")
    monkeypatch.setenv("APERTURE_CORS_ORIGINS", '["https://app.example"]')
    settings = Settings()
    assert settings.workers == 7 and settings.cors_origins == ["https://app.example"]
    monkeypatch.setenv("APERTURE_WORKERS", "0")
    with pytest.raises(ValidationError):
        Settings()
