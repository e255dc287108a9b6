"""The probe worker process: ``python -m autobatch._probe._main CONFIG.json``.

Loads the model and the data once (``Worker.from_config``), says ``ready``, then answers
each ``probe`` command (``autobatch._probe._protocol``). stdout carries nothing else: the
process moves fd 1 onto stderr (a log file the parent keeps) so that prints from TF or user
code cannot corrupt the protocol. It runs isolated from the parent's current folder
(``autobatch._isolated.python_command``) and dies with the parent.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import IO

from autobatch._probe import _protocol as protocol
from autobatch._probe._memory import read_status_bytes
from autobatch._probe._worker import Worker

logger = logging.getLogger("autobatch._probe._worker")


def _set_parent_death_signal() -> None:
    """Die with the parent (Linux), so an orphaned worker never keeps training."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _set_parent_death_signal()
    # Keep a private copy of stdout for the protocol; everything else printed goes to the log.
    channel: IO[bytes] = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def send(message: protocol.Message) -> None:
        channel.write(protocol.encode(message))
        channel.flush()

    config = json.loads(Path(argv[0]).read_text())
    started = time.perf_counter()
    try:
        import tensorflow as tf  # noqa: F401 - timed apart from the model load

        import_s = time.perf_counter() - started
        worker = Worker.from_config(config)
        # Asked once per runner (it keeps the first worker's answer in the config).
        accepts_uint8 = config["accepts_uint8"] if "accepts_uint8" in config else (
            worker.accepts_uint8())
    except Exception as exc:  # noqa: BLE001
        logger.error("worker start failed: %s", "".join(traceback.format_exception(exc)))
        send(protocol.error_message(exc))
        return 1
    send(protocol.ready_message(
        pid=os.getpid(), device=worker.device, import_s=import_s,
        load_s=time.perf_counter() - started, idle_rss_bytes=read_status_bytes("VmRSS"),
        image_size=worker.image_size, channels=worker.channels, accepts_uint8=accepts_uint8,
        num_replicas=worker.num_replicas))
    for line in sys.stdin:
        message = protocol.decode(line) if line.strip() else None
        if message is None:
            continue
        if message.get("cmd") == protocol.PROBE:
            send(protocol.result_message(worker.probe(message["request"])))
        elif message.get("cmd") == protocol.EXIT:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
