"""End to end, from pressing enter to a trained model (issue #22's Must-show): plain Keras
(``image_dataset_from_directory`` + ``model.fit``) against ``autobatch.fit`` with the same
epochs, each a fresh process with no cached plan, every image counted once per epoch.

    python benchmarks/end_to_end.py                    # the 2-minute job and the small job
    python benchmarks/end_to_end.py --images 3000 --epochs 40 --small-images 300

Each contender's wall time is the parent's clock around the child process (interpreter,
TensorFlow import, tuning and training); the two run back to back, alternating, and the
ratio of each pair is reported with the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import make_input_heavy_model  # noqa: E402

_KERAS = """
import sys, keras
data, model_path, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = keras.utils.image_dataset_from_directory(data, image_size=(128, 128), verbose=False)
model = keras.models.load_model(model_path)
history = model.fit(ds, epochs=epochs, verbose=0)
print("EPOCHS", len(history.history["loss"]), "SEEN", sum(len(y) for _, y in ds))
"""
_AUTOBATCH = """
import sys, autobatch
data, model_path, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
history = autobatch.fit(model_path, data, epochs=epochs, verbose=0)
effort = history.plan.measured.get("effort") or {}
print("EPOCHS", len(history.history["loss"]), "SEEN", history.history["examples_seen"],
      "COMPLETE", history.coverage.complete, "TUNE", round(history.tune_time_s, 1),
      "BATCH", history.plan.batch_size, "TUNED", effort.get("tuned"),
      "BUDGET", effort.get("budget_s"))
"""


def _run(code: str, data: Path, model: str, epochs: int, cache: Path) -> tuple[float, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "AUTOBATCH_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(data), model, str(epochs)],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return wall, proc.stdout.strip().splitlines()[-1]


def job(name: str, data: Path, model: str, epochs: int, repeats: int, work: Path) -> dict:
    pairs = []
    for index in range(repeats):
        keras_s, keras_out = _run(_KERAS, data, model, epochs, work / "unused")
        # A fresh cache folder each time: no plan, no study from an earlier run.
        auto_s, auto_out = _run(_AUTOBATCH, data, model, epochs, work / f"cache-{name}-{index}")
        pairs.append({"keras_s": round(keras_s, 1), "autobatch_s": round(auto_s, 1),
                      "ratio": round(auto_s / keras_s, 3), "keras": keras_out,
                      "autobatch": auto_out})
        print(name, pairs[-1], flush=True)
    return {"job": name, "epochs": epochs, "images": sum(1 for _ in data.glob("*/*")),
            "pairs": pairs, "median_ratio": statistics.median(p["ratio"] for p in pairs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000, help="the larger job's photos")
    parser.add_argument("--epochs", type=int, default=40, help="the larger job's epochs")
    parser.add_argument("--small-images", type=int, default=300)
    parser.add_argument("--small-epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=("large", "small"))
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from autobatch._for_benchmarks import PHOTO_CLASSES, make_photo_folder

    work = Path(args.work or tempfile.mkdtemp(prefix="autobatch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model = make_input_heavy_model(work / "strided_cnn.keras", 4, 128)
    results = []
    for name, images, epochs in (("large", args.images, args.epochs),
                                 ("small", args.small_images, args.small_epochs)):
        if args.only and args.only != name:
            continue
        data = work / f"photos-{images}"
        if not data.exists():
            make_photo_folder(data, classes=PHOTO_CLASSES[:4], images_per_class=images // 4,
                              size=(375, 500))
        results.append(job(name, data, model, epochs, args.repeats, work))
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
