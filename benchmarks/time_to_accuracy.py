"""Fastest to a target accuracy (issue #21): wall time until validation accuracy reaches a
target fixed beforehand, for the goodput plan (static, and with ``adapt=True``), the
throughput plan and Keras' default batch 32, side by side in one run, median of 3 seeds.

    pip install scikit-learn          # the data: its 8x8 digits, shipped with it
    python benchmarks/time_to_accuracy.py
    python benchmarks/time_to_accuracy.py --target 0.95 --out results/time_to_accuracy.json

The task: scikit-learn's 1797 handwritten digits upscaled to 32 px PNG files in class
folders, the built-in small CNN (Adam, compiled by autobatch), 20% held out by class. Each
plan is tuned once (its tune time reported apart; a later fit reuses the cached plan), then
every seed trains each configuration in turn, the order rotating, until the validation
accuracy reaches the target (or ``--max-epochs``); the learning rate is the plan's rule
(sqrt scaling for Adam, ``scale_lr=True``), the default trains at Keras' own settings
through the same ``autobatch.fit`` (a plan of batch 32, AUTOTUNE), so that only the batch
and the pipeline differ. ``goodput_adapt`` starts from the goodput plan and moves the batch
between epochs as the noise scale measured in training grows (the wall time includes every
move's retrace and new pipeline).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
logger = logging.getLogger("benchmarks.time_to_accuracy")


def make_digits(root: Path, size: int = 32) -> Path:
    """sklearn's digits as ``size`` px RGB PNG files, one folder per class."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = root / "digits"
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        pixels = (np.asarray(image) / 16.0 * 255).astype("uint8")
        picture = Image.fromarray(pixels, mode="L").resize((size, size), Image.BILINEAR)
        out = folder / str(label)
        out.mkdir(parents=True, exist_ok=True)
        picture.convert("RGB").save(out / f"{i:04d}.png")
    return folder


class _Target:
    """Stops training at the first epoch whose validation accuracy reaches the target."""

    def __init__(self, target: float) -> None:
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs: Any = None) -> None:
                outer.started = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                accuracy = float((logs or {}).get("val_accuracy", 0.0))
                outer.curve.append(round(accuracy, 4))
                if accuracy >= target and outer.reached_s is None:
                    outer.reached_s = time.perf_counter() - outer.started
                    outer.epochs = epoch + 1
                    self.model.stop_training = True

        self.callback = Callback()
        self.started = 0.0
        self.reached_s: float | None = None
        self.epochs: int | None = None
        self.curve: list[float] = []


def train_once(folder: Path, plan: Any, seed: int, target: float, max_epochs: int, *,
               adapt: bool = False) -> dict:
    import keras

    import autobatch

    keras.utils.set_random_seed(seed)
    stop = _Target(target)
    started = time.perf_counter()
    history = autobatch.fit("small_cnn", folder, image_size=32, plan=plan, epochs=max_epochs,
                            validation_split=0.2, seed=seed, scale_lr=True, verbose=0,
                            callbacks=[stop.callback], adapt=adapt)
    wall = time.perf_counter() - started
    extra = {}
    if adapt:
        extra = {"batch_per_epoch": history.history.get("batch_size"),
                 "noise_per_epoch": [None if n is None or n == float("inf") else round(n, 1)
                                     for n in history.history.get("noise_scale", [])],
                 "moves": history.adapt["moves"] if history.adapt else []}
    return {"seed": seed, "batch_size": plan.batch_size, "mixed_precision": plan.mixed_precision,
            "reached": stop.reached_s is not None,
            "time_to_target_s": round(stop.reached_s, 2) if stop.reached_s else None,
            "epochs_to_target": stop.epochs, "fit_wall_s": round(wall, 2),
            "val_accuracy_curve": stop.curve,
            "learning_rate": history.learning_rate.get("learning_rate_after"), **extra}


def default_plan(tuned: Any) -> Any:
    """Keras' default as a plan: batch 32, AUTOTUNE, no memory levers, the tuned plan's
    geometry."""
    from autobatch._plan import Plan
    from autobatch._settings import PipelineSettings

    data = tuned.to_dict()
    data["batch_size"] = data["per_replica_batch_size"] = 32
    if data.get("num_examples"):
        data["steps_per_epoch"] = -(-int(data["num_examples"]) // 32)
    data["pipeline"] = PipelineSettings.keras_default().to_dict()
    data["jit_compile"] = False
    for lever in ("mixed_precision", "remat"):  # Keras' default: float32, no remat
        data.pop(lever, None)
    # The untuned default itself (the only plan that may hold AUTOTUNE).
    data["measured"] = {**data.get("measured", {}),
                        "versus_default": {"decision": "default",
                                           "reason": "Keras' default, for comparison"}}
    plan = Plan.from_dict(data)
    from autobatch._search._assemble import learning_rate_record

    plan.learning_rate = learning_rate_record("Adam", 32)
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import autobatch

    with tempfile.TemporaryDirectory(prefix="tta-") as tmp:
        root = Path(tmp)
        os.environ["AUTOBATCH_CACHE_DIR"] = str(root / "cache")
        folder = make_digits(root)
        plans: dict[str, Any] = {}
        tune_s: dict[str, float] = {}
        for objective in ("throughput", "goodput"):
            started = time.perf_counter()
            plans[objective] = autobatch.tune("small_cnn", folder, image_size=32,
                                              trials=args.trials, objective=objective,
                                              try_xla=False, verbose=0)
            tune_s[objective] = round(time.perf_counter() - started, 1)
            logger.info("%s plan: batch %d (tuned in %.0f s)", objective,
                        plans[objective].batch_size, tune_s[objective])
        plans["goodput_adapt"] = plans["goodput"]
        plans["keras_default_32"] = default_plan(plans["throughput"])
        names = list(plans)
        runs: list[dict] = []
        for seed in range(args.seeds):
            order = names[seed % len(names):] + names[:seed % len(names)]
            for name in order:
                run = train_once(folder, plans[name], seed, args.target, args.max_epochs,
                                 adapt=name == "goodput_adapt")
                run["config"] = name
                runs.append(run)
                logger.info("seed %d %s: batch %d, %s", seed, name, run["batch_size"],
                            f"{run['time_to_target_s']} s, {run['epochs_to_target']} epochs"
                            if run["reached"] else "target not reached")
    summary = {}
    for name in names:
        mine = [r for r in runs if r["config"] == name]
        times = [r["time_to_target_s"] if r["reached"] else float("inf") for r in mine]
        epochs = [r["epochs_to_target"] or args.max_epochs for r in mine]
        summary[name] = {"batch_size": mine[0]["batch_size"],
                         **({"batch_sizes_used": sorted({b for r in mine
                                                         for b in r["batch_per_epoch"] or []})}
                            if name == "goodput_adapt" else {}),
                         "median_time_to_target_s": statistics.median(times),
                         "median_epochs_to_target": statistics.median(epochs),
                         "reached": sum(r["reached"] for r in mine),
                         "tune_s": tune_s.get(name.replace("_adapt", ""))}
    objective = plans["goodput"].measured.get("objective", {})
    result = {"target_val_accuracy": args.target, "seeds": args.seeds, "trials": args.trials,
              "noise_scale": objective.get("noise_scale"),
              "goodput_finalists": objective.get("finalists"),
              "summary": summary, "runs": runs}
    for name, row in summary.items():
        print(f"{name:18s} batch {row['batch_size']:4d}: median "
              f"{row['median_time_to_target_s']} s, {row['median_epochs_to_target']} epochs "
              f"({row['reached']}/{args.seeds} reached)")
    if args.out is not None:
        out = args.out if args.out.is_absolute() else HERE / args.out
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
