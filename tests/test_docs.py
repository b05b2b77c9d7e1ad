"""The README documents what the code does: every setting, and the two set-up commands."""

from __future__ import annotations

from pathlib import Path

from common.settings import Settings

README_PATH = Path(__file__).resolve().parents[1] / "README.md"
README = README_PATH.read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    groups = {"tiles"}  # nested settings, each of their fields is listed below
    names = [name for name in Settings.model_fields if name not in groups]
    missing = [name for name in names if f"`APERTURE_{name.upper()}`" not in README]
    assert missing == []


def test_the_readme_shows_the_two_commands() -> None:
    assert "uv run aperture serve" in README and "uv run pytest" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "run pytest" in ci


def test_every_tile_setting_is_in_the_readme() -> None:
    from common.settings import TileSettings

    missing = [
        name
        for name in TileSettings.model_fields
        if f"`APERTURE_TILES_{name.upper()}`" not in README
    ]
    assert missing == []


def test_the_descriptions_promise_only_what_exists() -> None:
    """The API's and the package's descriptions name inference only once a capability
    runs it."""
    import tomllib

    from common.capabilities import load_capabilities
    from web.app import create_app

    app = create_app(Settings(data_dir=Path("/nonexistent")))  # built, not started
    package = tomllib.loads((README_PATH.parent / "pyproject.toml").read_text())
    texts = [app.description, package["project"]["description"]]
    capabilities = load_capabilities()
    inference = {name for name in capabilities if name.startswith("inference")}
    naming = [t for t in texts if "inference" in t.lower()]
    assert naming == (texts if inference else [])  # both name it once it runs, else neither
    if inference:  # and /functions describes each inference capability
        assert {"inference.slide", "inference.region", "inference.external"} <= inference
        described = {name: capabilities[name].description for name in inference}
        assert all("slide" in d.lower() or "region" in d.lower() for d in described.values())
    assert all("trace fitting" in t and "Deep Zoom" in t for t in texts)
