"""The typed core stays typed: ``mypy --strict`` on the data, probe, search and plan
packages exits 0 (issue #17; pyproject's follow_imports=silent reports only these)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STRICT_PACKAGES = ("autobatch/_data", "autobatch/_probe", "autobatch/_search", "autobatch/_plan")


def test_mypy_strict_on_the_core_packages() -> None:
    pytest.importorskip("mypy")
    cache = ROOT / ".mypy_cache"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache),
         *STRICT_PACKAGES],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Success" in result.stdout
