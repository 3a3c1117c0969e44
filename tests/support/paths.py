"""Where things are, whatever the depth of the test module that asks."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
"""The checkout."""
DATA = TESTS / "data"
"""The evaluation sets (tests/data/README.md)."""
GOLDEN = TESTS / "golden"
"""The rendered repositories of each profile, as they must stay."""
SHARED = ROOT.parent / "shared"
"""Material next to the checkout on the project's machines; tests that read it skip when it is absent."""
