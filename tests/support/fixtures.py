"""Where the real instrument and scanner files live: `shared/fixtures/real/` beside the
checkout (a worktree elsewhere falls back to the workplace's copy)."""

from __future__ import annotations

from pathlib import Path

_BESIDE_CHECKOUT = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"
REAL = _BESIDE_CHECKOUT if _BESIDE_CHECKOUT.exists() else Path("/work/shared/fixtures/real")
