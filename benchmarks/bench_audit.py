"""Header-only audit speed: files per second over many small image files.

    python benchmarks/bench_audit.py [--files 100000] [--workers N] [--dir PATH]

Writes ``--files`` small images (JPEG/PNG/WebP/GIF/BMP mix, ~1-3 KiB each, 10 classes)
once into ``--dir`` (default: a temp dir, removed afterwards), then times ``audit()``
twice (first run: cold-ish page cache for a fresh folder is not guaranteed; second run:
warm cache). Not a test: speed lives here, never in assertions.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image

from autobatch import audit

FORMATS = (("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("GIF", ".gif"),
           ("BMP", ".bmp"))


def _templates(count: int = 50) -> list[tuple[bytes, str]]:
    rng = np.random.default_rng(0)
    templates = []
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
        fmt, ext = FORMATS[i % len(FORMATS)]
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        templates.append((buf.getvalue(), ext))
    return templates


def build(root: str, files: int, classes: int = 10) -> None:
    templates = _templates()
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c:02d}"), exist_ok=True)
    for i in range(files):
        data, ext = templates[i % len(templates)]
        # A unique trailer per file so that the duplicate check has real work but no hits.
        data = data + i.to_bytes(8, "little") if ext not in (".bmp",) else data
        path = os.path.join(root, f"class_{i % classes:02d}", f"img_{i:07d}{ext}")
        with open(path, "wb") as f:
            f.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="autobatch-bench-audit-")
    try:
        if not os.path.isdir(os.path.join(root, "class_00")):
            t0 = time.perf_counter()
            build(root, args.files)
            print(f"wrote {args.files} files in {time.perf_counter() - t0:.1f} s")
        for run in (1, 2):
            t0 = time.perf_counter()
            report = audit(root, workers=args.workers)
            elapsed_s = time.perf_counter() - t0
            print(f"run {run}: {report.files_on_disk} files in {elapsed_s:.2f} s = "
                  f"{report.files_on_disk / elapsed_s:,.0f} files/s "
                  f"(usable {report.usable_images}, skipped {len(report.skipped)}, "
                  f"warnings {len(report.warnings)}, workers {args.workers or 'default'}, "
                  f"cpus {os.cpu_count()})")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
