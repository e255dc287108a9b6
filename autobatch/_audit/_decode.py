"""``audit --deep``: decode every usable file with TensorFlow, in worker processes.

Each worker runs this module with ``LIST START`` (started by
``autobatch._isolated.python_command``: isolated, so nothing in the current folder is
imported): it decodes the files of a list (one hex-encoded path per line, so any file name
survives) from index START on, and prints one line per file: ``ok <channels>`` or
``err <message>``. Worker processes, not threads, because a decoder can take the whole
process down: TF 2.21 corrupts its heap on an animated WebP and aborts on a later decode
(measured). When a worker dies, the file it was on is retried first in a fresh worker; only
a file that kills a fresh worker as its first decode is blamed, so an earlier file's heap
damage never condemns an innocent one.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable

from autobatch._isolated import python_command

logger = logging.getLogger(__name__)


_MIN_FILES_PER_WORKER = 200
DecodeResult = tuple[str | None, int | None]
"""``(error message or None, decoded channels or None)`` for one file."""


def decode_all(paths: list[str], *, processes: int | None = None,
               progress: Callable[[int, int, str], None] | None = None) -> list[DecodeResult]:
    """Decode ``paths`` with ``tf.io.decode_image(expand_animations=False)``.

    Args:
        paths: files to decode.
        processes: worker processes (default: the usable cores, as ``autobatch env`` counts).
        progress: called as ``progress(done, total, "decode")``.

    Returns:
        One ``(error, channels)`` per path, in order.
    """
    total = len(paths)
    results: list[DecodeResult] = [(None, None)] * total
    if progress:
        progress(0, total, "decode")
    if not paths:
        return results
    if processes is None:
        from autobatch._env import cpu_info

        processes = cpu_info().effective
    # Each worker pays a TensorFlow import (seconds), so small folders get fewer workers.
    processes = max(1, min(processes, -(-total // _MIN_FILES_PER_WORKER)))
    bounds = [(total * i // processes, total * (i + 1) // processes) for i in range(processes)]
    events: queue.Queue[int | None] = queue.Queue()
    with tempfile.TemporaryDirectory(prefix="autobatch-deep-") as tmp:
        threads = []
        for n, (lo, hi) in enumerate(bounds):
            list_path = os.path.join(tmp, f"list{n}.txt")
            with open(list_path, "w", encoding="ascii") as f:
                f.writelines(os.fsencode(p).hex() + "\n" for p in paths[lo:hi])
            thread = threading.Thread(target=_drive_worker,
                                      args=(list_path, hi - lo, results, lo, events),
                                      daemon=True)
            thread.start()
            threads.append(thread)
        done, finished = 0, 0
        while finished < len(threads):
            item = events.get()
            if item is None:
                finished += 1
                continue
            done += item
            if progress:
                progress(done, total, "decode")
        for thread in threads:
            thread.join()
    return results


def _drive_worker(list_path: str, count: int, results: list[DecodeResult], offset: int,
                  events: queue.Queue[int | None]) -> None:
    """Run workers over one slice until every file has a result (restarting after crashes)."""
    start = 0
    try:
        while start < count:
            first = start
            proc = subprocess.Popen(
                python_command("autobatch._audit._decode", [list_path, str(start)]),
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_worker_env(),
            )
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                status, _, rest = line.partition(" ")
                if status == "ok":
                    channels = int(rest) if rest.isdigit() else None
                    results[offset + start] = (None, channels)
                else:
                    results[offset + start] = (rest or "does not decode", None)
                start += 1
                events.put(1)
            code = proc.wait()
            if start < count:
                if start == first:
                    # It died on the very first file of a fresh process: that file did it.
                    results[offset + start] = (
                        f"crashed TensorFlow's decoder (worker exit code {code})", None)
                    start += 1
                    events.put(1)
                else:
                    logger.info("decode worker died (exit code %s) at file %d; retrying it "
                                "in a fresh worker", code, offset + start)
    finally:
        events.put(None)


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""  # decoding is CPU work; never take GPU memory
    return env


def _worker_main(list_path: str, start: int) -> int:
    """Child side: decode each listed file from ``start`` on, one result line per file."""
    import tensorflow as tf

    # One thread per worker: the parent runs one worker per usable core.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    with open(list_path, encoding="ascii") as f:
        paths = [os.fsdecode(bytes.fromhex(line.strip())) for line in f if line.strip()]
    out = sys.stdout
    for path in paths[start:]:
        try:
            with open(path, "rb") as image_file:
                data = image_file.read()
            image = tf.io.decode_image(data, expand_animations=False)
            out.write(f"ok {int(image.shape[-1])}\n")
        except Exception as exc:  # noqa: BLE001 - any failure means "does not decode"
            message = str(exc).split("}}")[-1].strip().splitlines()
            text = message[0] if message else type(exc).__name__
            out.write(f"err {text[:200]}\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1], int(sys.argv[2])))
