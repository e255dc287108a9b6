"""autobatch against what users would otherwise use, on this machine, in one run.

    python benchmarks/run.py            # full run (tens of minutes on 2 cores)
    python benchmarks/run.py --quick    # smaller data and fewer repeats, for a smoke test

Writes benchmarks/RESULTS.md (a table with the machine described), benchmarks/results.json
and benchmarks/results.png. Every comparison is measured side by side in the same run, with
interleaved repeats and medians, because this kind of shared machine varies by +-30%.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _pipelines  # noqa: E402
import _stats  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOFLINE_BATCHES = (32, 128)
"""Batch sizes the compute roofline is measured at besides the plan's and its neighbours (half
and double), where the tune may train with them (at least four steps per epoch, under the
memory ceiling); the best counts."""
REPLY_TIMEOUT_S = 1800
"""How long the parent waits for a contender's warm-up or sample before calling it hung."""
logger = logging.getLogger("benchmarks")


# ---------------------------------------------------------------- workloads


def make_workload_data(root: Path, images_per_class: int, classes: int) -> Path:
    from autobatch._for_benchmarks import PHOTO_CLASSES, make_photo_folder

    data_dir = root / "photos"
    if not data_dir.exists():
        make_photo_folder(data_dir, classes=PHOTO_CLASSES[:classes],
                          images_per_class=images_per_class, size=(375, 500))
    return data_dir


def _fresh_model(spec: str, num_classes: int, image_size: int, seed: int = 0):
    import keras

    from autobatch._for_benchmarks import resolve_model

    keras.utils.set_random_seed(seed)
    return resolve_model(spec, num_classes=num_classes, image_size=image_size)


def make_input_heavy_model(path: Path, num_classes: int, image_size: int) -> str:
    """A small strided CNN: cheap enough per image that decoding photo-sized JPEGs, not the
    model, bounds training on a CPU (what 'input-heavy' means). Saved as a .keras file, the
    way a user hands their own model to autobatch."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(16, 5, strides=4, activation="relu", padding="same")(x)
    x = layers.Conv2D(32, 3, strides=2, activation="relu", padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="strided_cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(path)
    return str(path)


# ---------------------------------------------------------------- 1 + 3: throughput


USER_PIPELINES = {
    "keras_default": _pipelines.keras_default,
    "classic_tf_data": _pipelines.classic_file_pipeline,
    "preloaded_arrays": _pipelines.preloaded_arrays,
    "python_generator": _pipelines.python_generator,
}
"""The pipelines users write, by name, in the order the tables show them."""


@dataclass(frozen=True)
class _ContenderSpec:
    """What a contender process needs to build its pipeline and model (picklable)."""

    key: str
    spec: str
    data_dir: Path
    image_size: int
    num_classes: int
    num_examples: int
    plan_path: Path
    jit_compile: bool
    epochs_per_sample: int
    rooflines: tuple[str, ...] = ()
    """Roofline keys measured in this contender's process, on its model (see
    ``_contender_main``)."""


def _build_contender(c: _ContenderSpec) -> tuple[Any, dict[str, Any], int]:
    """``(data, fit kwargs, examples per epoch)`` for one contender, in its own process."""
    if c.key in USER_PIPELINES:
        return (*USER_PIPELINES[c.key](c.data_dir, c.image_size), c.num_examples)
    if c.key == "autobatch":
        import autobatch

        # As autobatch.fit trains: one iterator for all epochs, each exactly one pass.
        plan = autobatch.Plan.load(c.plan_path)
        return plan.dataset(c.data_dir, repeat=True), plan.fit_kwargs(), c.num_examples
    raise ValueError(f"unknown contender {c.key!r}")


def _build_roofline(key: str, arrays: tuple[Any, Any]) -> tuple[Any, dict[str, Any], int]:
    """The compute roofline at batch N (``roofline_bN``): the data already cut into batches
    of N, each a tensor in memory, served in turn (no decoding, no copying, no shuffling) -
    what the model alone can do. Distinct batches, not one batch repeated: one repeated batch
    would stay warm in the CPU caches, which no real epoch does. Its rate counts full
    batches. ``roofline_u8_bN`` holds the same pixels as uint8 (PIL's resize gives whole
    levels), as a plan with uint8 pixels feeds them: the model casts them on its first
    operation."""
    import tensorflow as tf

    kind, _, batch = key.removeprefix("roofline_").rpartition("b")
    batch_size = int(batch)
    x, y = arrays
    if kind == "u8_":
        x = x.astype("uint8")
    n = len(x)
    batches = [(tf.constant(x[i: i + batch_size]), tf.constant(y[i: i + batch_size]))
               for i in range(0, (n // batch_size) * batch_size, batch_size)
               ] or [(tf.constant(x), tf.constant(y))]
    roofline = tf.data.Dataset.from_tensors(batches[0])
    for batch in batches[1:]:
        roofline = roofline.concatenate(tf.data.Dataset.from_tensors(batch))
    steps = math.ceil(n / batch_size)
    return (roofline.repeat(), {"steps_per_epoch": steps},
            steps * int(batches[0][0].shape[0]))


def _contender_main(conn: Any, c: _ContenderSpec) -> None:
    """One contender's process: build, warm up, then one sample per request.

    Each pipeline trains in a process of its own, as a user's training does: in one shared
    process the contenders' leftovers (a generator's and Keras' loader's threads and
    buffers) slowed the plan's tf.data pipeline to 0.82 of the roofline, against 0.94 with
    the two alone (7 interleaved rounds each, same script, 2026-11-26).

    The rooflines, though, train in the plan's process, on the plan's model: the same
    compiled step, weights and memory, so that plan / roofline compares input pipelines and
    nothing else. Each in a process of its own, a process's speed differed by itself: in
    two full runs one roofline process read 10-35% above its twin (the same batches as
    float32 instead of uint8) in every round, while four roofline processes run
    alone (two of each) read 56.8-61.3 examples/s, the two dtypes alike on average (6
    rounds, MobileNetV2 at batch 32, 2026-11-26)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Wall time from the first epoch's start to the last epoch's end."""

        start: float | None = None
        end: float | None = None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if self.start is None:
                self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.end = time.perf_counter()

    try:
        inputs = {c.key: _build_contender(c)}
        if c.rooflines:
            arrays = _pipelines.load_arrays(c.data_dir, c.image_size)
            inputs.update((key, _build_roofline(key, arrays)) for key in c.rooflines)
        model = _fresh_model(c.spec, c.num_classes, c.image_size)
        if c.jit_compile and c.key == "autobatch":
            model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"],
                          jit_compile=True)
        # Warm-up epochs: tracing (one per input shape and dtype), first allocations, and
        # filling any cache the plan chose.
        warmup_s = {}
        for key, (data, kwargs, _) in inputs.items():
            with _stats.Timer() as timer:
                model.fit(data, epochs=1, verbose=0, **kwargs)
            warmup_s[key] = timer.elapsed_s
        conn.send(("ready", warmup_s))
        while (request := conn.recv()) != "stop":
            # The clock runs from the first epoch's start to the last one's end, not around
            # the fit call: a call ends by deleting its iterator, which with tf.data's
            # autotuner on waits for that thread's next wake-up (up to seconds; see
            # autobatch._data._tail.autotune_options). A user pays that once per training,
            # a sample here would pay it every time.
            data, kwargs, examples = inputs[request]
            clock = EpochClock()
            model.fit(data, epochs=c.epochs_per_sample, verbose=0, callbacks=[clock], **kwargs)
            conn.send(("sample", c.epochs_per_sample * examples / (clock.end - clock.start)))
    except BaseException as exc:  # noqa: BLE001 - report, the parent decides
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class _Contender:
    """The parent's handle on one contender process."""

    def __init__(self, context: Any, c: _ContenderSpec) -> None:
        self.key = c.key
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_contender_main, args=(child, c), daemon=True)
        self.process.start()
        child.close()

    def _reply(self, expect: str) -> Any:
        if not self.conn.poll(REPLY_TIMEOUT_S):
            self.process.kill()
            raise RuntimeError(f"contender {self.key} gave no answer in {REPLY_TIMEOUT_S} s")
        try:
            kind, value = self.conn.recv()
        except EOFError:
            self.process.join(timeout=10)
            raise RuntimeError(f"contender {self.key} died (exit code "
                               f"{self.process.exitcode})") from None
        if kind != expect:
            raise RuntimeError(f"contender {self.key} failed: {value}")
        return value

    def ready(self) -> dict[str, float]:
        """Warm-up seconds of each input this process trains on."""
        return self._reply("ready")

    def sample(self, key: str | None = None) -> float:
        """Examples/s of one sample on the contender's own pipeline, or on the roofline
        ``key`` it hosts."""
        self.conn.send(key or self.key)
        return float(self._reply("sample"))

    def stop(self) -> None:
        try:
            self.conn.send("stop")
        except OSError:
            pass
        self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.kill()


def throughput_section(name: str, data_dir: Path, spec: str, image_size: int, *,
                       repeats: int, tune_budget_s: float, memory_budget: str | None,
                       work: Path, epochs_per_sample: int = 1) -> dict[str, Any]:
    """End-to-end training examples/s after a warm-up epoch, every pipeline side by side,
    each in a process of its own, samples interleaved across them."""
    import multiprocessing

    import autobatch

    num_examples = _pipelines.count_images(data_dir)
    num_classes = len([p for p in data_dir.iterdir() if p.is_dir()])
    logger.info("[%s] tuning %s at %d px on %d images", name, spec, image_size, num_examples)
    plan_path = work / f"plan-{name}.json"
    with _stats.Timer() as tune_timer:
        plan = autobatch.tune(spec, data_dir, image_size=image_size, memory_budget=memory_budget,
                              time_budget=tune_budget_s, force=True, output=plan_path)
    logger.info("[%s] plan: batch %d, %s (tuning took %.0f s)", name, plan.batch_size,
                plan.pipeline.to_dict(), tune_timer.elapsed_s)

    # The roofline at the plan's batch size and at others; the best of them counts: the
    # limit for this model on this machine, not for the plan's choice of batch. Among the
    # batch sizes a plan may train with (at least four steps per epoch, as the tune allows).
    # Tensors of uint8 too, at the plan's batch and its neighbours: a plan with uint8 pixels
    # must be held to what the model does with uint8 tensors in memory.
    from autobatch._for_benchmarks import training_batch_cap

    cap = min(training_batch_cap(num_examples), plan.ceiling_batch_size or num_examples)
    neighbours = {b for b in (max(1, plan.batch_size // 2), plan.batch_size * 2) if b <= cap}
    roofline_batches = sorted({plan.batch_size,
                               *(b for b in ROOFLINE_BATCHES if b <= cap), *neighbours})
    rooflines = (*(f"roofline_b{b}" for b in roofline_batches),
                 *(f"roofline_u8_b{b}" for b in sorted({plan.batch_size, *neighbours})))
    keys = (*USER_PIPELINES, "autobatch", *rooflines)
    context = multiprocessing.get_context("spawn")
    contenders: dict[str, _Contender] = {}
    warmup_s: dict[str, float] = {}
    runs = {}
    try:
        for key in (*USER_PIPELINES, "autobatch"):  # one at a time: warm-ups do not share CPUs
            contender = contenders[key] = _Contender(context, _ContenderSpec(
                key, spec, data_dir, image_size, num_classes, num_examples, plan_path,
                plan.jit_compile, epochs_per_sample,
                rooflines=rooflines if key == "autobatch" else ()))
            warmups = contender.ready()
            warmup_s.update(warmups)
            runs[key] = contender.sample
            logger.info("[%s] warm-up: %s", name,
                        ", ".join(f"{k} {seconds:.1f} s" for k, seconds in warmups.items()))
        runs.update((key, functools.partial(contenders["autobatch"].sample, key))
                    for key in rooflines)
        # Keras' default, the plan and the rooflines run back to back in every round: their
        # ratios are the headlines, and this machine's speed drifts by 2x over tens of minutes.
        samples = _stats.interleaved({key: runs[key] for key in keys}, repeats,
                                     together=("keras_default", "autobatch", *rooflines))
    finally:
        for contender in contenders.values():
            contender.stop()
    medians = {key: _stats.median(values) for key, values in samples.items()}
    base = medians["keras_default"]
    best_roofline = max(rooflines, key=lambda key: medians[key])
    result = {
        "workload": name,
        "model": Path(spec).stem if spec.endswith(".keras") else spec,
        "image_size": image_size,
        "num_examples": num_examples,
        "epochs_per_sample": epochs_per_sample,
        "repeats": repeats,
        "isolation": "one process per pipeline; the rooflines in the plan's process",
        "plan": {"batch_size": plan.batch_size, "pipeline": plan.pipeline.to_dict(),
                 "jit_compile": plan.jit_compile, "ceiling_batch_size": plan.ceiling_batch_size,
                 "tuned_examples_per_s": plan.measured.get("examples_per_s")},
        "tune_time_s": tune_timer.elapsed_s,
        "warmup_s": warmup_s,
        "examples_per_s": samples,
        "median_examples_per_s": medians,
        "spread": {key: _stats.spread(values) for key, values in samples.items()},
        "ratio_to_keras_default": {key: value / base for key, value in medians.items()},
        # The headline: median of the per-round ratios (the column above is a ratio of
        # medians, for every pipeline alike).
        "plan_over_keras_default": _stats.paired_ratio(samples["autobatch"],
                                                       samples["keras_default"]),
        "roofline": {
            "batch_sizes": roofline_batches,
            "keys": list(rooflines),
            "best": best_roofline,
            "per_round_ratios": [a / b for a, b in zip(samples["autobatch"],
                                                       samples[best_roofline], strict=True)],
            "ratio_of_medians": medians["autobatch"] / medians[best_roofline],
            "ratio_to_plan_batch": _stats.paired_ratio(
                samples["autobatch"], samples[f"roofline_b{plan.batch_size}"]),
        },
        "plan_over_roofline": _stats.paired_ratio(samples["autobatch"], samples[best_roofline]),
        "decoded_fits_in_ram": True,
    }
    logger.info("[%s] ratios to keras default: %s; paired: plan / keras default %.3f, "
                "plan / roofline %.3f", name,
                {k: round(v, 2) for k, v in result["ratio_to_keras_default"].items()},
                result["plan_over_keras_default"], result["plan_over_roofline"])
    return result


# ---------------------------------------------------------------- 2: ceiling finders


def ceiling_section(data_dir: Path, spec: str, image_size: int, budget: str,
                    work: Path, only_autobatch: bool = False,
                    earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ceiling finders on the same probe engine and the same budget."""
    import _ceiling_finders

    return _ceiling_finders.compare(data_dir, spec, image_size, budget, work,
                                    only_autobatch=only_autobatch, earlier=earlier)


# ---------------------------------------------------------------- 4: search efficiency


def search_section(quick: bool) -> dict[str, Any] | None:
    """Tuned vs exhaustive grid: ``bench_search.py`` (its own run, 10+ minutes; run it
    alone to refresh ``results/search.json``), read back."""
    import subprocess

    path = HERE / "results" / "search.json"
    if not path.exists():
        subprocess.run([sys.executable, str(HERE / "bench_search.py"), "--out", str(path)],
                       check=True)
    return json.loads(path.read_text())


# ---------------------------------------------------------------- output


def write_outputs(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    _plot(results, out_dir / "results.png")
    (out_dir / "RESULTS.md").write_text(_markdown(results))


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = [r for r in results.get("throughput", [])]
    ceiling = results.get("ceiling")
    ncols = len(sections) + (1 if ceiling else 0)
    fig, axes = plt.subplots(1, max(1, ncols), figsize=(5.5 * max(1, ncols), 4.2))
    axes = list(axes) if ncols > 1 else [axes]
    for ax, section in zip(axes, sections, strict=False):  # one more axis for the ceiling
        ratios = section["ratio_to_keras_default"]
        keys = list(ratios)
        colors = ["tab:green" if k == "autobatch" else
                  "tab:gray" if k.startswith("roofline") else "tab:blue" for k in keys]
        ax.bar(range(len(keys)), [ratios[k] for k in keys], color=colors)
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([k.replace("_", "\n") for k in keys], fontsize=8)
        ax.set_ylabel("examples/s relative to Keras default")
        ax.set_title(f"{section['workload']}: {section['model']} @ {section['image_size']} px")
    if ceiling:
        ax = axes[-1]
        finders = ceiling["finders"]
        keys = list(finders)
        ax.bar(range(len(keys)), [finders[k]["probes"] for k in keys],
               color=["tab:green" if k == "autobatch" else "tab:blue" for k in keys])
        for i, k in enumerate(keys):
            found = finders[k]["ceiling"]
            mark = " OVER" if finders[k]["pick_over_budget"] else ""
            ax.text(i, finders[k]["probes"] + 0.2, f"bs {found}{mark}", ha="center", fontsize=8)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, fontsize=8)
        ax.set_ylabel("probes used")
        ax.set_title(f"ceiling finders (true max {ceiling['true_max']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# autobatch benchmarks",
        "",
        f"One run of `python benchmarks/run.py{' --quick' if results['quick'] else ''}` on "
        f"{results['date']}: {m['cpu_model']}, {m['cpus_usable']} usable CPUs, "
        f"{m['memory_total_bytes'] / 2**30:.1f} GiB RAM, GPUs: {', '.join(m['gpus']) or 'none'}; "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, Python {m['python']}. "
        "Each pipeline trains in a process of its own (as a user's training does; in one "
        "shared process the contenders slowed each other), samples interleaved across "
        "them; the compute rooflines train in the plan's process, on the plan's model (same "
        "compiled step, weights and memory: a process's speed differs by itself). "
        "Medians of interleaved repeats (each sample one `model.fit` call "
        "of one or more epochs, timed from its first epoch's start to its last epoch's end, "
        "not around the call: with tf.data's autotuner on, a call returns only at that "
        "thread's next wake-up) after a warm-up epoch; the spread column is (max - min) / "
        "median.",
        "",
        "![results](results.png)",
        "",
    ]
    for section in results.get("throughput", []):
        plan = section["plan"]
        lines += [
            f"## End-to-end training throughput: {section['workload']} "
            f"({section['model']} at {section['image_size']} px, "
            f"{section['num_examples']} photo-sized JPEGs)",
            "",
            f"Plan: batch {plan['batch_size']}, pipeline `{json.dumps(plan['pipeline'])}`, "
            f"jit_compile={plan['jit_compile']}; tuning took {section['tune_time_s']:.0f} s. "
            f"{section.get('repeats', results['repeats'])} interleaved samples per pipeline, "
            f"{section['epochs_per_sample']} epoch(s) each.",
            "",
            "| pipeline | examples/s (median) | spread | vs Keras default |",
            "|---|---:|---:|---:|",
        ]
        for key, value in section["median_examples_per_s"].items():
            lines.append(f"| {key} | {value:.1f} | {section['spread'][key]:.0%} | "
                         f"{section['ratio_to_keras_default'][key]:.2f}x |")
        roof = section.get("roofline", {})
        if "plan_over_keras_default" in section:
            lines += ["", "autobatch / Keras default: "
                      f"**{section['plan_over_keras_default']:.2f}x** (median of the per-round "
                      "ratios; the two ran back to back in every round; the table's column is "
                      "a ratio of medians)"]
        lines += ["", f"autobatch / compute roofline: **{section['plan_over_roofline']:.2f}** "
                  f"(median of the per-round ratios to `{roof.get('best', 'roofline')}`, the "
                  "best of the rooflines; ratio of the medians "
                  f"{roof.get('ratio_of_medians', float('nan')):.2f}; against the roofline at "
                  f"the plan's own batch {roof.get('ratio_to_plan_batch', float('nan')):.2f}). "
                  "A roofline `roofline_bN` trains on the same images pre-cut into distinct "
                  "batch tensors of N, served in turn from memory: no decoding, copying or "
                  "shuffling; N is the plan's batch, its half and double, 32 and 128, where a "
                  "plan may train with them (at least four steps per epoch); `roofline_u8_bN` "
                  "holds the same pixels as uint8 tensors (at the plan's batch, its half and "
                  "double), which the model casts itself, as it does a plan's uint8 batches. "
                  "The rooflines trained in the plan's process, on its model, back to back "
                  "with the plan in every round.", ""]
    for ceiling in (results.get("ceiling"), results.get("ceiling_large_model")):
        if not ceiling:
            continue
        truth = ceiling.get("truth", "fresh workers")
        lines += [
            f"## Ceiling finders ({ceiling['model']} at {ceiling['image_size']} px, "
            f"budget {ceiling['budget']})",
            "",
            f"True largest batch under the budget (bisection over {truth}): "
            f"**{ceiling['true_max']}**. Each pick was then run once more the same way.",
            "",
            "| finder | probes | wall time (s) | ceiling found | found / true "
            "| pick over budget when run |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for key, f in ceiling["finders"].items():
            lines.append(f"| {key} | {f['probes']} | {f['wall_time_s']:.0f} | {f['ceiling']} | "
                         f"{f['ceiling'] / ceiling['true_max']:.2f} | "
                         f"{'yes' if f['pick_over_budget'] else 'no'} |")
        lines.append("")
        lines += _repeated_truth_lines(ceiling)
    search = results.get("search")
    if search:
        grid_points = 1
        for values in search.get("space", {}).values():
            grid_points *= max(1, len(values))
        h2h = search.get("head_to_head", {})
        lines += [
            "## Search efficiency (tuned vs exhaustive grid, `benchmarks/bench_search.py`)",
            "",
            f"Grid: {grid_points} points of `{json.dumps(search.get('space'))}`, every point "
            "measured in interleaved repeats. Then the tuned winner and the grid's best are "
            f"measured head to head, interleaved, {h2h.get('rounds')} rounds, each with "
            "`model.fit` epochs (how the plan trains: the headline) and with the grid's own "
            "bare-loop probe.",
            "",
            "| | wall time (s) | examples/s, fit (median) | examples/s, loop (median) |",
            "|---|---:|---:|---:|",
            f"| exhaustive grid | {search['grid'].get('wall_s', float('nan')):.0f} | "
            f"{h2h.get('grid_median', float('nan')):.0f} | "
            f"{h2h.get('loop', {}).get('grid_median', float('nan')):.0f} |",
            f"| autobatch tune | {search['tune'].get('wall_s', float('nan')):.0f} | "
            f"{h2h.get('tuned_median', float('nan')):.0f} | "
            f"{h2h.get('loop', {}).get('tuned_median', float('nan')):.0f} |",
            "",
            f"Tuned / grid best: **{search.get('throughput_ratio', float('nan')):.3f}** "
            f"(target >= 0.95; bare loop {h2h.get('loop', {}).get('ratio') or float('nan'):.3f})"
            f" in **{search.get('time_fraction', float('nan')):.1%}** of the "
            "grid's time (target <= 15%).",
            "",
        ]
    lines += _end_to_end_lines()
    lines += _shared_study_lines()
    lines += _time_to_accuracy_lines()
    return "\n".join(lines) + "\n"


def _time_to_accuracy_lines() -> list[str]:
    """``benchmarks/time_to_accuracy.py``'s last run (``results/time_to_accuracy.json``), and
    its repeat on the same code where there is one (``time_to_accuracy_repeat.json``)."""
    path = HERE / "results" / "time_to_accuracy.json"
    if not path.exists():
        return []
    run = json.loads(path.read_text())
    noise = run.get("noise_scale") or {}
    b = noise.get("b_simple")
    noise_text = (f"B_simple {b:.0f} ({noise.get('low') or 0:.0f}-"
                  f"{noise.get('high') or float('inf'):.0f}) from batches of "
                  f"{noise.get('small_batch_size')} and {noise.get('large_batch_size')}"
                  if b else "not resolved")
    lines = ["## Fastest to a target accuracy (`benchmarks/time_to_accuracy.py`)", "",
             f"scikit-learn's digits at 32 px, the small CNN (Adam, the plan's sqrt learning-rate "
             f"rule), 20% held out; wall time of `autobatch.fit` until validation accuracy "
             f"reaches {run['target_val_accuracy']}, {run['seeds']} seeds, the configurations "
             f"interleaved. The goodput tune's gradient noise scale: {noise_text}. "
             "goodput_adapt starts from the goodput plan and moves the batch between epochs "
             "(`adapt=True`); its batch column lists the batches it trained at.", ""]
    lines += _time_to_accuracy_table(run)
    repeat = HERE / "results" / "time_to_accuracy_repeat.json"
    if repeat.exists():
        again = json.loads(repeat.read_text())
        lines += ["", "The same benchmark run again on the same code (a second tune of each "
                  "plan), for the noise between runs:", ""]
        lines += _time_to_accuracy_table(again)
    return lines + [""]


def _time_to_accuracy_table(run: dict) -> list[str]:
    lines = ["| configuration | batch | mixed precision | median time to target (s) | "
             "per seed (s) | median epochs | reached | tune (s) |",
             "|---|---:|---|---:|---|---:|---:|---:|"]
    for name, row in run["summary"].items():
        seconds = row["median_time_to_target_s"]
        shown = f"{seconds:.1f}" if seconds not in (None, float("inf")) and \
            seconds != "Infinity" else "not reached"
        mine = [r for r in run["runs"] if r["config"] == name]
        seeds = ", ".join(f"{r['time_to_target_s']:.1f}" if r["reached"] else "-"
                          for r in sorted(mine, key=lambda r: r["seed"]))
        precision = mine[0].get("mixed_precision") or "float32" if mine else "-"
        batch = ", ".join(str(b) for b in row.get("batch_sizes_used") or [row["batch_size"]])
        lines.append(f"| {name} | {batch} | {precision} | {shown} | {seeds} | "
                     f"{row['median_epochs_to_target']} | {row['reached']}/{run['seeds']} | "
                     f"{row.get('tune_s') or '-'} |")
    return lines


def _shared_study_lines() -> list[str]:
    """``benchmarks/shared_study.py``'s last run (``results/shared_study.json``), read back."""
    path = HERE / "results" / "shared_study.json"
    if not path.exists():
        return []
    run = json.loads(path.read_text())
    lines = ["## One study, several processes (`benchmarks/shared_study.py`)", "",
             f"One study of {run['trials']} trials (the small CNN at 48 px, 120 images) done "
             f"by 1 and by 3 `autobatch tune` processes on {run['storage']}, on "
             f"{run['cpus']} cores, the two interleaved; wall time from the first start to the "
             "last exit. Every process ended with the same plan. On two cores three "
             "processes and their probe workers share the CPUs: the figure is for the record.",
             "", "| repeat | 1 process (s) | 3 processes (s) |", "|---|---:|---:|"]
    for repeat in sorted({r["repeat"] for r in run["runs"]}):
        walls = {r["processes"]: r["wall_s"] for r in run["runs"] if r["repeat"] == repeat}
        lines.append(f"| {repeat + 1} | {walls.get(1, float('nan')):.1f} | "
                     f"{walls.get(3, float('nan')):.1f} |")
    median = run["median_wall_s"]
    lines.append(f"| **median** | **{median['1']:.1f}** | **{median['3']:.1f}** "
                 f"({run['three_over_one']:.2f}x) |")
    return lines + [""]


def _repeated_truth_lines(ceiling: dict) -> list[str]:
    """Repeated fresh plain-Keras runs around the bisection's truth, where they were made
    (``results/ceiling_truth_<model>_repeats.json``): where the peak is not monotone in the
    batch, the largest batch below which every batch fits."""
    short = ceiling["model"].split("_")[0]
    lines: list[str] = []
    bisection = HERE / "results" / f"ceiling_truth_{short}_repeated_bisection.json"
    if bisection.exists():
        again = json.loads(bisection.read_text())
        lines += [f"With every verdict repeated ({again['truth']}; "
                  f"`benchmarks/ceiling_truth_repeated.py`, {len(again['runs'])} processes): "
                  f"true largest batch **{again['true_max']}**.", "",
                  "| finder | ceiling found | found / repeated truth |", "|---|---:|---:|"]
        for key, f in ceiling["finders"].items():
            lines.append(f"| {key} | {f['ceiling']} | "
                         f"{f['ceiling'] / again['true_max']:.2f} |")
        lines.append("")
    path = HERE / "results" / f"ceiling_truth_{short}_repeats.json"
    if not path.exists():
        return lines
    run = json.loads(path.read_text())
    tried = ", ".join(f"{r['batch_size']} {'fits' if r['fits'] else 'over'} "
                      f"({r['peak_bytes'] / 1e9:.2f} GB)" for r in run["runs"])
    return lines + [f"Repeated fresh plain-Keras runs beside it: {tried}. {run['note']}", ""]


def _end_to_end_lines() -> list[str]:
    """``benchmarks/end_to_end.py``'s last run (``results/end_to_end.json``), read back."""
    path = HERE / "results" / "end_to_end.json"
    if not path.exists():
        return []
    jobs = json.loads(path.read_text())
    lines = ["## End to end: pressing enter to a trained model (`benchmarks/end_to_end.py`)", "",
             "Plain Keras (`image_dataset_from_directory` + `model.fit`) against "
             "`autobatch.fit` with the same epochs: fresh processes, no cached plan, the "
             "two alternating; the strided CNN at 128 px on photo-sized JPEGs. Every image "
             "was counted once per epoch in every run.", "",
             "| job | Keras (s) | autobatch.fit (s) | ratio | target | autobatch's plan |",
             "|---|---:|---:|---:|---:|---|"]
    for job in jobs:
        target = "<= 0.6" if job["job"] == "large" else "<= 1.3"
        for pair in job["pairs"]:
            words = pair["autobatch"].split()
            plan = (f"batch {words[words.index('BATCH') + 1]}, tuned "
                    f"{words[words.index('TUNE') + 1]} s" if "BATCH" in words else "")
            if "TUNED" in words and words[words.index("TUNED") + 1] == "False":
                plan = "not tuned (too small to pay back), batch 32"
            lines.append(f"| {job['images']} images x {job['epochs']} epochs | "
                         f"{pair['keras_s']:.1f} | {pair['autobatch_s']:.1f} | "
                         f"{pair['ratio']:.2f} | {target} | {plan} |")
        lines.append(f"| **median** | | | **{job['median_ratio']:.2f}** | | |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, few repeats")
    parser.add_argument("--out", default=str(HERE), help="where RESULTS.md etc. go")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--only", choices=["input", "compute", "ceiling", "search"],
                        action="append")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite RESULTS.md and the plot from results.json")
    parser.add_argument("--keep", action="store_true",
                        help="keep the other sections of an earlier results.json")
    parser.add_argument("--reuse-truth", action="store_true",
                        help="ceiling: take the true maximum and the anchors' rows from the "
                             "earlier results.json; run autobatch's finder alone")
    parser.add_argument("--ceiling-model", default="small_cnn")
    parser.add_argument("--ceiling-size", type=int, default=128)
    parser.add_argument("--ceiling-budget", default="1200MiB")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.render_only:
        write_outputs(json.loads((Path(args.out) / "results.json").read_text()), Path(args.out))
        return 0
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        return _run(args, Path(args.work))
    # A folder of the run's own (data, models, plans) goes when the run ends, however it ends.
    with tempfile.TemporaryDirectory(prefix="autobatch-bench-") as work:
        return _run(args, Path(work))


def _run(args: argparse.Namespace, work: Path) -> int:
    only = set(args.only or ["input", "compute", "ceiling", "search"])
    quick = args.quick
    repeats = 3 if quick else 5
    data_dir = make_workload_data(work, images_per_class=40 if quick else 150, classes=4)

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "quick": quick,
        "repeats": repeats,
        "machine": _stats.machine_description(),
        "throughput": [],
    }
    out = Path(args.out)
    previous = out / "results.json"
    if args.keep and previous.exists():
        # Keep the sections this run does not redo (a section at a time on a busy machine).
        old = json.loads(previous.read_text())
        redo = {"input": "input-heavy", "compute": "compute-heavy"}
        results["throughput"] = [t for t in old.get("throughput", [])
                                 if t["workload"] not in {redo[k] for k in only if k in redo}]
        for key in ("ceiling", "ceiling_large_model", "search"):
            if key.split("_")[0] not in only and old.get(key):
                results[key] = old[key]
    if "input" in only:
        spec = make_input_heavy_model(work / "strided_cnn.keras", 4, 128)
        results["throughput"].append(throughput_section(
            # A sample of this fast model is a few seconds: more of them, and longer ones,
            # for the same confidence as the compute-heavy workload's 40 s epochs.
            "input-heavy", data_dir, spec, 128, repeats=repeats if quick else 9,
            tune_budget_s=60 if quick else 180, memory_budget=None, work=work,
            epochs_per_sample=8))
        write_outputs(results, out)
    if "compute" in only:
        results["throughput"].append(throughput_section(
            "compute-heavy", data_dir, "mobilenet_v2", 96, repeats=repeats,
            tune_budget_s=90 if quick else 300, memory_budget=None, work=work))
        write_outputs(results, out)
    if "ceiling" in only:
        earlier = json.loads(previous.read_text()) if args.reuse_truth else {}
        results["ceiling"] = ceiling_section(data_dir, args.ceiling_model, args.ceiling_size,
                                             args.ceiling_budget, work,
                                             earlier=earlier.get("ceiling"))
        write_outputs(results, out)
        # A large model as well, autobatch's finder alone (the anchors take an hour there).
        results["ceiling_large_model"] = ceiling_section(
            data_dir, "mobilenet_v2", 96, "3GiB", work, only_autobatch=True,
            earlier=earlier.get("ceiling_large_model"))
        write_outputs(results, out)
    if "search" in only:
        results["search"] = search_section(quick)
    results["throughput"].sort(key=lambda t: t["workload"] != "input-heavy")
    write_outputs(results, out)
    logger.info("wrote %s", Path(args.out) / "RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
