"""The report page in a real browser (headless Chromium): plots render, errors are caught."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _plans import ARTIFACTS, full_plan

from autobatch._cli import main

# ---------------------------------------------------------------- real browser


def _chromium_or_skip() -> None:
    """Skip only on a developer machine without Chromium; under CI the test must run."""
    from _browser import find_chromium

    if os.environ.get("CI", "").lower() in ("", "0", "false"):
        if find_chromium() is None:
            pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
        pytest.importorskip("websocket", reason="websocket-client is not installed "
                            "(pip install websocket-client); CI runs this test")


def test_browser_renders_both_plots_without_errors(tmp_path: Path) -> None:
    """Must show: `autobatch report plan.json --out r.html`, checked in headless Chromium."""
    _chromium_or_skip()
    from _browser import check_page

    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(full_plan(), indent=2))
    html = tmp_path / "r.html"
    assert main(["report", str(plan_path), "--out", str(html)]) == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in ("plan.json", "r.html"):
        (ARTIFACTS / f"report-{name}").write_bytes((tmp_path / name).read_bytes())
    screenshot = ARTIFACTS / "report-screenshot.png"
    check = check_page(html, screenshot_path=screenshot)
    assert check.errors == []
    assert check.external_requests == []
    assert check.title == "autobatch report: small_cnn"
    assert [img["id"] for img in check.images] == ["plot-memory", "plot-throughput"]
    for img in check.images:
        assert img["complete"] and img["visible"], img
        assert img["natural_width"] == 1100 and img["natural_height"] == 484, img
        assert img["width"] > 300 and img["height"] > 100, img
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_browser_check_catches_console_errors_and_broken_images(tmp_path: Path) -> None:
    """The browser check above can fail: a broken page is reported as broken."""
    _chromium_or_skip()
    from _browser import check_page

    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'>"
                    "<title>broken</title></head><body><img id='bad' alt='bad' "
                    "src='data:image/png;base64,AAAA'><script>console.error('boom');"
                    "undefinedFunction();</script></body></html>")
    check = check_page(page)
    assert "boom" in check.console_errors
    assert any("undefinedFunction" in e for e in check.exceptions)
    assert check.images[0]["natural_width"] == 0
