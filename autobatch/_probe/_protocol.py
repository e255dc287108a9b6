"""The JSON-lines protocol between a probe runner and its worker process, for both sides.

The parent starts the worker with a config file; the worker answers one ``ready`` message
(or one ``error`` message and exits), then reads ``probe`` commands from its stdin and
answers each with a ``result`` message on its stdout. EOF on stdin (or an ``exit`` command)
ends the worker. One JSON object per line; a line that is not one (a stray print) is no
message.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import IO, Any, Literal

from autobatch._errors import DataError, ModelError
from autobatch._probe._types import ProbeRequest

logger = logging.getLogger(__name__)

Message = dict[str, Any]
Received = Literal["message", "timeout", "eof"]

READY = "ready"
ERROR = "error"
RESULT = "result"
PROBE = "probe"
EXIT = "exit"


def encode(message: Message) -> bytes:
    """One protocol line (UTF-8, newline-terminated)."""
    return (json.dumps(message, default=str) + "\n").encode("utf-8")


def decode(line: str) -> Message | None:
    """The message on ``line``, or None when the line is not a protocol message."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# ---- parent -> worker
def probe_command(request: ProbeRequest) -> Message:
    return {"cmd": PROBE, "request": request.to_dict()}


# ---- worker -> parent
def ready_message(**fields: Any) -> Message:
    """``pid``, ``device``, ``import_s``, ``load_s``, ``idle_rss_bytes``, ``image_size``,
    ``channels``, ``accepts_uint8``, ``num_replicas``."""
    return {"event": READY, **fields}


def error_message(exc: BaseException) -> Message:
    """Why the worker could not start: ``kind`` is ``model``, ``data`` or ``crash``, and
    ``message`` the exception's first line."""
    kind = "model" if isinstance(exc, ModelError) else "data" if isinstance(
        exc, DataError) else "crash"
    text = str(exc).strip()
    return {"event": ERROR, "kind": kind,
            "message": text.splitlines()[0] if text else type(exc).__name__}


def result_message(result: Message) -> Message:
    return {"event": RESULT, "result": result}


def is_event(message: Message | None, event: str) -> bool:
    return message is not None and message.get("event") == event


class MessageReader:
    """The parent's end of the worker's stdout: a thread reads its lines into a queue, so
    that waiting for the next message can time out."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump_lines, args=(stream, self._lines), daemon=True,
                         name="autobatch-probe-reader").start()

    def receive(self, timeout_s: float) -> tuple[Message | None, Received]:
        """The next protocol message, or (None, why): ``"timeout"`` or ``"eof"``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "timeout"
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                return None, "eof"
            message = decode(line)
            if message is not None:
                return message, "message"
            logger.debug("worker said: %s", line.rstrip())


def _pump_lines(stream: IO[bytes] | None, lines: queue.Queue[str | None]) -> None:
    if stream is None:
        lines.put(None)
        return
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        pass
    lines.put(None)
