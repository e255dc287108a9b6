"""Must show (issue #22, item 3): a probe's peak against the peak of a fresh process that
trains the same model at that batch with plain Keras.

For each model and each batch (a small and a large one), ``autobatch probe DATA --model M
--image-size S --batch-size B --json`` (its default ``fit`` mode: ``model.fit`` on the
freshly loaded model, in a worker of its own) and, in another child process, plain Keras
(``image_dataset_from_directory`` at batch B, the same built-in model, a few ``fit`` steps;
no autobatch code on the path) each report their peak resident memory (``VmHWM``); the
ratio must lie within 0.9-1.1. The older bare-loop probe (``--mode loop``) is measured
beside them for the record.

    python benchmarks/check_probe_memory.py [DATA_DIR] [--out results/probe_memory.json]

(a folder of 300 photo-sized JPEGs is made when none is given). Exit 0 when every fit-mode
ratio lies within 0.9-1.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _ceiling_finders import PLAIN_FIT  # noqa: E402

CASES = (("small_cnn", 128, (32, 256)), ("mobilenet_v2", 96, (8, 128)))


def _env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def probe_peak(data_dir: Path, spec: str, size: int, batch: int, mode: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "autobatch", "probe", str(data_dir), "--model", spec,
         "--image-size", str(size), "--batch-size", str(batch), "--steps", "4", "--mode", mode,
         "--json"], capture_output=True, text=True, env=_env(), check=False)
    result = json.loads(proc.stdout)
    if result["outcome"] != "ok":
        raise SystemExit(f"probe {spec} batch {batch} ({mode}): {result['outcome']}")
    return int(result["peak_host_memory_bytes"])


def plain_peak(data_dir: Path, spec: str, size: int, batch: int) -> int:
    proc = subprocess.run([sys.executable, "-c", PLAIN_FIT, str(data_dir), spec, str(size),
                           str(batch)], capture_output=True, text=True, env=_env(), check=False)
    peaks = [int(line.split()[1]) for line in proc.stdout.splitlines()
             if line.startswith("VMHWM_BYTES")]
    if proc.returncode != 0 or not peaks:
        raise SystemExit(f"plain Keras {spec} batch {batch} failed: {proc.stderr[-800:]}")
    return peaks[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        from autobatch._for_benchmarks import PHOTO_CLASSES, make_photo_folder

        data_dir = Path(tempfile.mkdtemp(prefix="autobatch-mem-")) / "photos"
        make_photo_folder(data_dir, classes=PHOTO_CLASSES[:4], images_per_class=75,
                          size=(375, 500))
    rows = []
    for spec, size, batches in CASES:
        for batch in batches:
            plain = plain_peak(data_dir, spec, size, batch)
            fit = probe_peak(data_dir, spec, size, batch, "fit")
            loop = probe_peak(data_dir, spec, size, batch, "loop")
            rows.append({"model": spec, "image_size": size, "batch_size": batch,
                         "plain_keras_fit_bytes": plain, "probe_fit_bytes": fit,
                         "probe_loop_bytes": loop, "fit_ratio": round(fit / plain, 3),
                         "loop_ratio": round(loop / plain, 3)})
            print(json.dumps(rows[-1]), flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows,
              "within_0_9_1_1": all(0.9 <= r["fit_ratio"] <= 1.1 for r in rows)}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["within_0_9_1_1"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
