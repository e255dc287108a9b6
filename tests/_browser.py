"""Drive a real headless Chromium over the DevTools protocol (tests only).

``check_page(path)`` opens a local file, waits for the load event, and returns what a
person would care about: console errors and uncaught exceptions, requests that left the
machine or failed, every image's natural and displayed size, and a full-page screenshot.

Needs ``/usr/bin/chromium`` (Debian's ``chromium`` package; ``$AUTOBATCH_CHROMIUM``
overrides) and the ``websocket-client`` package.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-allow-origins=*",
    "--remote-debugging-port=0",  # the browser picks a free port and writes DevToolsActivePort
)

_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(img => {
  const box = img.getBoundingClientRect();
  return {id: img.id, alt: img.alt, complete: img.complete,
          natural_width: img.naturalWidth, natural_height: img.naturalHeight,
          width: box.width, height: box.height,
          visible: getComputedStyle(img).visibility !== 'hidden' && box.width > 0};
}))"""


def find_chromium() -> str | None:
    """The Chromium executable, or None when none is installed."""
    explicit = os.environ.get("AUTOBATCH_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageCheck:
    """What the browser saw while loading one page."""

    url: str
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot_png: bytes = b""

    @property
    def errors(self) -> list[str]:
        """Everything that counts as an error on the page, in one list."""
        return self.console_errors + self.exceptions + self.log_errors + self.failed_requests


class _DevTools:
    """A minimal DevTools client: send a command, collect events until its answer."""

    def __init__(self, ws_url: str, timeout_s: float) -> None:
        import websocket  # websocket-client; a test dependency

        self._ws = websocket.create_connection(ws_url, timeout=timeout_s, suppress_origin=True)
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method} failed: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(e["method"] == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} within {timeout_s:.0f} s")
            message = json.loads(self._ws.recv())
            if "method" in message:
                self.events.append(message)

    def close(self) -> None:
        self._ws.close()


def _devtools_port(user_data_dir: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    port_file = user_data_dir / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode} before listening")
        if port_file.is_file():
            lines = port_file.read_text().split()
            if lines:
                return int(lines[0])
        time.sleep(0.1)
    raise TimeoutError(f"chromium did not open its DevTools port within {timeout_s:.0f} s")


def _page_ws_url(port: int, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
            targets = json.loads(answer.read())
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        if time.monotonic() > deadline:
            raise TimeoutError("chromium opened no page target")
        time.sleep(0.1)


def _collect(check: PageCheck, events: list[dict[str, Any]]) -> None:
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            check.console_errors.append(text)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            check.exceptions.append(str(details.get("exception", {}).get("description")
                                        or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            check.log_errors.append(
                f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith(("data:", "file:", "about:")):
                check.external_requests.append(url)
        elif method == "Network.loadingFailed":
            check.failed_requests.append(f"{params.get('errorText')} ({params.get('type')})")


def check_page(path: str | os.PathLike[str], *,
               screenshot_path: str | os.PathLike[str] | None = None,
               timeout_s: float = 60.0, window: tuple[int, int] = (1280, 1000)) -> PageCheck:
    """Load a local HTML file in headless Chromium and report what happened.

    Args:
        path: the HTML file.
        screenshot_path: where to save a full-page PNG screenshot (optional).
        timeout_s: limit for start-up and for the page load.
        window: viewport width and height in CSS pixels.

    Raises:
        RuntimeError: no Chromium, or it failed to start.
        TimeoutError: the page did not finish loading in time.
    """
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no chromium executable found; apt-get install chromium")
    url = Path(path).resolve().as_uri()
    check = PageCheck(url=url)
    with tempfile.TemporaryDirectory(prefix="autobatch-chromium-") as profile:
        log_path = Path(profile) / "chromium.log"
        user_data = Path(profile) / "profile"
        with open(log_path, "wb") as log:
            # Own session: the browser's helper processes go down with it, and only them.
            proc = subprocess.Popen(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={user_data}",
                 f"--window-size={window[0]},{window[1]}", "about:blank"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            port = _devtools_port(user_data, proc, timeout_s)
            tools = _DevTools(_page_ws_url(port, timeout_s), timeout_s)
            try:
                for domain in ("Runtime", "Log", "Network", "Page"):
                    tools.call(f"{domain}.enable")
                tools.events.clear()  # events of about:blank are not the page's
                tools.call("Page.navigate", url=url)
                tools.wait_for("Page.loadEventFired", timeout_s)
                check.title = tools.call("Runtime.evaluate", expression="document.title",
                                         returnByValue=True)["result"].get("value", "")
                images = tools.call("Runtime.evaluate", expression=_IMAGES_JS, returnByValue=True)
                check.images = json.loads(images["result"]["value"])
                size = tools.call("Page.getLayoutMetrics")["cssContentSize"]
                shot = tools.call("Page.captureScreenshot", format="png",
                                  captureBeyondViewport=True,
                                  clip={"x": 0, "y": 0, "width": size["width"],
                                        "height": size["height"], "scale": 1})
                check.screenshot_png = base64.b64decode(shot["data"])
                _collect(check, tools.events)
            finally:
                tools.close()
        except BaseException:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            if tail:
                print(f"chromium log (tail):\n{tail}")
            raise
        finally:
            _stop(proc)
    if screenshot_path is not None and check.screenshot_png:
        target = Path(screenshot_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(check.screenshot_png)
    return check


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the browser this module started (its own process group, nothing else)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
