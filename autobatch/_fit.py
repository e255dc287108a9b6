"""The hand-off to Keras: pre-flight checks, the tuned pipeline, LR scaling, and ``model.fit``
with the examples trained on counted inside the training step.

Validation split: deterministic (``seed``, default ``DEFAULT_SPLIT_SEED``), stratified by
class when labels are class indices, and made on the file list / array indices before any
batching, so training and validation never share an example and the plan's steps refer to
the training part only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

from autobatch._coverage import CoverageReport, counting_train_step, make_coverage_callback
from autobatch._errors import DataError, ModelError, UsageError
from autobatch._models import model_input_shape
from autobatch._sources import ArraySource, FileSource, GeneratorSource, resolve_source

logger = logging.getLogger(__name__)

DEFAULT_SPLIT_SEED = 1337
"""Split seed when ``seed`` is None: the split stays the same run after run."""
GENERATOR_SAMPLE_EXAMPLES = 256
"""Examples drawn from a single-example generator to tune on (as arrays, in the worker)."""

# Fit arguments the plan decides; passing them would undo the coverage guarantee or clash.
_PLAN_OWNED = ("batch_size", "x", "y", "validation_split", "shuffle")

_SPARSE_LOSSES = ("sparse_categorical_crossentropy", "sparsecategoricalcrossentropy",
                  "sparse_categorical_focal", "sparse")
_ONE_HOT_LOSSES = ("categorical_crossentropy", "categoricalcrossentropy",
                   "categorical_focal_crossentropy", "categoricalfocalcrossentropy",
                   "categorical_hinge", "categoricalhinge")
_BINARY_LOSSES = ("binary_crossentropy", "binarycrossentropy", "binary_focal_crossentropy",
                  "binaryfocalcrossentropy")


@dataclass(frozen=True)
class InputSpec:
    """What the pipeline must produce for this model (from the pre-flight checks)."""

    image_size: tuple[int, int] | None
    channels: int | None
    label_kind: str
    """``"index"``, ``"one_hot"`` or ``"unknown"``."""
    num_classes: int | None


# ---------------------------------------------------------------- public functions


def fit(
    model: Any,
    data: Any,
    *,
    epochs: int = 1,
    plan: Any = None,
    validation_split: float | None = None,
    seed: int | None = None,
    callbacks: list[Any] | None = None,
    scale_lr: bool = False,
    reference_batch_size: int | None = None,
    tune_options: dict[str, Any] | None = None,
    image_size: int | tuple[int, int] | None = None,
    num_examples: int | None = None,
    batched: bool | None = None,
    on_epoch: Any = None,
    verbose: int | str = "auto",
    **fit_kwargs: Any,
) -> Any:
    """Tune (or reuse a plan), build the tuned pipeline and train with coverage accounting.

    Args:
        model: a compiled ``keras.Model``, a ``.keras`` path, or a built-in name.
        data: an image folder, ``(x, y)`` arrays, a generator function, a generator, or a
            ``keras.utils.PyDataset``.
        epochs: epochs to train.
        plan: a ``Plan`` or the path of a plan file; None tunes (the plan cache makes a
            repeated call cheap). For generators a plan is made in-process (see
            ``autobatch._generators``).
        validation_split: fraction of the examples held out for validation (folders and
            arrays), split before batching, deterministic given ``seed``.
        seed: seed of the split and of the per-epoch shuffle.
        callbacks: Keras callbacks, run after the coverage callback.
        scale_lr: multiply the optimizer's learning rate by the plan's factor (linear for
            SGD, square root for Adam-family); otherwise the factor is only reported.
        reference_batch_size: the batch size the compiled learning rate was chosen for
            (default: the plan's, 32 unless tuned otherwise).
        tune_options: keyword arguments for ``autobatch.tune`` when no plan is given.
        image_size: input size for a built-in model SPEC (ignored for a built model).
        num_examples: examples in one pass of a generator. Required for a generator
            object (it cannot be counted without using it up) and for an endless
            generator function; a generator function without it is counted in one extra
            pass before training (a pass that does not end is a ``UsageError``).
        batched: for a generator function: True when it yields batches, False for single
            examples, None to detect from the model's input rank.
        on_epoch: optional ``callable(EpochCoverage)`` called after each epoch.
        verbose: Keras' meaning (``"auto"``, 0, 1, 2), for the tune's progress display
            (``autobatch._progress``) and for ``model.fit``.
        **fit_kwargs: passed to ``model.fit`` (``steps_per_epoch``, ...).

    Returns:
        The Keras ``History``, with ``history.plan`` (the plan used), ``history.coverage``
        (a ``CoverageReport``), ``history.learning_rate`` (the scaling and whether it was
        applied), ``history.steps_per_epoch``, ``history.tune_time_s`` (seconds spent
        getting the plan: tuning, or the cache look-up) and
        ``history.history["examples_seen"]`` (per epoch).

    Raises:
        UsageError: a pre-flight check failed (shapes, classes, label encoding), an
            argument the plan owns was passed, a folder has one class (or one image), or a
            generator's length is unknown (see ``num_examples``).
    """
    for name in _PLAN_OWNED:
        if name in fit_kwargs:
            raise UsageError(
                f"fit() chooses {name} itself; remove {name}=... (use validation_split= "
                "of autobatch.fit, or pass a plan to fix the batch size)"
            )
    if epochs < 1:
        raise UsageError(f"epochs must be >= 1, got {epochs}")
    from autobatch._sources import check_learnable

    tune_options = dict(tune_options or {})
    user_steps = fit_kwargs.get("steps_per_epoch")
    source = _with_generator_hints(resolve_source(data), num_examples, batched)
    check_learnable(source)
    if isinstance(source, GeneratorSource) and _is_one_shot(source):
        from autobatch._generators import PeekableIterator, ensure_known_length

        if user_steps is None:
            ensure_known_length(source)  # a one-shot stream of unknown length: an error
        # Several checks peek at the first element; a one-shot stream must not lose it.
        source = dataclasses.replace(source, generator=PeekableIterator(source.generator))
    model_spec = model if isinstance(model, (str, os.PathLike)) else None
    model = _resolve_model(model, source, image_size=image_size or tune_options.get("image_size"))
    if isinstance(source, GeneratorSource) and source.batched is None:
        source = dataclasses.replace(source, batched=_detect_batched(model, source))
    if isinstance(source, GeneratorSource) and user_steps is None:
        from autobatch._generators import ensure_known_length

        # Before any tuning or training: an endless generator would never end an epoch.
        source = ensure_known_length(source)

    train_source, val_source = split_source(source, validation_split, seed)
    spec = preflight(model, train_source)
    tune_started = time.perf_counter()
    plan = _obtain_plan(model, train_source, spec, plan, tune_options, reference_batch_size,
                        model_spec=model_spec, verbose=verbose)
    tune_time_s = time.perf_counter() - tune_started
    plan = _plan_for(plan, spec)
    plan = _pixels_for(plan, model, train_source)

    # Image folders and arrays train from one endless iterator: the next epoch's first batches
    # are prepared while the last ones train (each pass still exactly one epoch).
    endless = (user_steps is None and isinstance(train_source, (FileSource, ArraySource))
               and bool(train_source.num_examples))
    train_ds = plan.dataset(train_source, shuffle=True, seed=seed, repeat=endless)
    expected = _expected_examples(train_source, train_ds)
    report = CoverageReport(expected_examples=expected)
    info = getattr(train_ds, "autobatch_info", None)
    if info is not None and info.uneven:
        report.uneven_last_batch = info.last_batch_size
        report.notes.append(
            f"the generator's {info.num_examples} examples do not divide into batches of "
            f"{info.batch_size}: the last batch holds {info.last_batch_size}"
        )

    short_cause = None
    if endless:
        fit_kwargs["steps_per_epoch"] = _steps(expected, plan.batch_size)
    elif user_steps is not None:
        # The dataset is one epoch long; repeat it so user steps can run across epochs.
        train_ds = train_ds.repeat()
        short_cause = (
            f"steps_per_epoch={user_steps} was passed; leave it out so one epoch is one pass "
            f"({_steps(expected, plan.batch_size)} steps of {plan.batch_size})"
        )
        report.notes.append(short_cause)
    if val_source is not None:
        fit_kwargs["validation_data"] = plan.dataset(val_source, shuffle=False, seed=seed)

    lr_info = apply_learning_rate(model, plan, scale_lr=scale_lr)
    xla_for_this_fit = bool(plan.jit_compile and not getattr(model, "jit_compile", False))
    if xla_for_this_fit:
        # The plan measured the step compiled with XLA; train what was measured, and give the
        # model its own setting (off) back afterwards.
        model.jit_compile = True
        model.train_function = None  # a cached train function would keep the old setting
        logger.info("training with jit_compile=True for this fit, as the plan measured")

    noun = "images" if isinstance(train_source, FileSource) else "examples"
    fit_kwargs["verbose"] = verbose
    with counting_train_step(model) as counter, warnings.catch_warnings():
        if user_steps is None:
            # A generator's length is unknown to Keras until its first pass ends; Keras then
            # warns that the input "ran out of data". The coverage check reports real
            # shortfalls, with their cause, so that warning would only mislead.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        coverage_cb = make_coverage_callback(counter, report, noun=noun,
                                             short_cause=short_cause, on_epoch=on_epoch)
        # shuffle=False: the pipeline reshuffles every epoch itself; Keras ignores (and
        # warns about) shuffle for a tf.data input.
        try:
            history = model.fit(train_ds, epochs=epochs, shuffle=False,
                                callbacks=[coverage_cb, *(callbacks or [])], **fit_kwargs)
        finally:
            if xla_for_this_fit:
                model.jit_compile = False
                model.train_function = None
    history.plan = plan
    history.coverage = report
    history.learning_rate = lr_info
    history.tune_time_s = tune_time_s
    history.steps_per_epoch = (
        user_steps if user_steps is not None
        else (info.steps_per_epoch if info is not None and info.batched
              else _steps(expected, plan.batch_size))
    )
    if report.complete and report.epochs:
        logger.info("coverage: every epoch trained on all %d usable %s",
                    report.epochs[-1].examples_seen, noun)
    return history


def dataset(data: Any, plan: Any = None, *, shuffle: bool = True, seed: int | None = None,
            model: Any = None, repeat: bool = False,
            image_size: int | tuple[int, int] | None = None, **tune_options: Any) -> Any:
    """The tuned, batched ``tf.data.Dataset`` for ``data``, for custom training loops.

    Args:
        data: an image folder, ``(x, y)`` arrays, a generator, or a PyDataset.
        plan: a ``Plan`` or plan file path; None tunes ``model`` on ``data`` first.
        shuffle: reshuffle every epoch.
        seed: shuffle seed.
        model: the model to tune for when no plan is given.
        repeat: endless whole epochs, for ``model.fit(..., **plan.fit_kwargs())``.
        image_size: resize images to this instead of the plan's image size.
        **tune_options: passed to ``autobatch.tune`` when tuning.

    Returns:
        The dataset: one pass is one epoch over every usable example.
    """
    if plan is None:
        if model is None:
            raise UsageError("dataset() needs a plan or a model to tune for; pass plan= or model=")
        from autobatch._search import tune

        plan = tune(model, data, **tune_options)
    plan = _load_plan(plan)
    return plan.dataset(data, shuffle=shuffle, seed=seed, repeat=repeat, image_size=image_size)


# ---------------------------------------------------------------- model and plan


def _resolve_model(model: Any, source: Any, *, image_size: Any) -> Any:
    import keras

    from autobatch._models import resolve_model

    if isinstance(model, keras.Model):
        if not model.compiled:
            raise UsageError(
                "the model is not compiled; call model.compile(optimizer=..., loss=...) first"
            )
        return model
    num_classes = getattr(source, "num_classes", None) or 0
    return resolve_model(model, num_classes=num_classes, image_size=image_size)


def _load_plan(plan: Any) -> Any:
    from autobatch._plan import Plan

    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, (str, os.PathLike)):
        return Plan.load(plan)
    raise UsageError(f"plan must be a Plan or a plan file path, got {type(plan).__name__}")


def _obtain_plan(model: Any, source: Any, spec: InputSpec, plan: Any,
                 tune_options: dict[str, Any], reference_batch_size: int | None, *,
                 model_spec: Any = None, verbose: int | str = "auto") -> Any:
    if plan is not None:
        plan = _load_plan(plan)
        if plan.num_examples != (source.num_examples or plan.num_examples):
            logger.info("the plan was tuned on %d examples, training on %s: steps recomputed",
                        plan.num_examples, source.num_examples)
    elif isinstance(source, GeneratorSource):
        plan = _generator_plan(model, source, spec, tune_options, verbose=verbose)
    else:
        from autobatch._api import tune_events
        from autobatch._search import tune

        options = dict(tune_options)
        # The size and channels the model takes, as tune reads them from the model when
        # not given: the same fingerprints, so fit finds the plan tune made (and the SPEC
        # the user gave, not the model built from it: a .keras file fingerprints by its
        # bytes, a built-in by its name).
        if spec.image_size is not None:
            options.setdefault("image_size", spec.image_size)
        if spec.channels is not None:
            options.setdefault("channels", spec.channels)
        with tune_events(verbose, options.pop("on_event", None)) as on_event:
            plan = tune(model_spec if model_spec is not None else model, source,
                        on_event=on_event, **options)
    lr = plan.learning_rate
    optimizer_name = _optimizer_name(model)
    wanted_ref = reference_batch_size or lr.reference_batch_size
    if (lr.rule == "none" or lr.optimizer != optimizer_name
            or wanted_ref != lr.reference_batch_size):
        from autobatch._plan import learning_rate_scaling

        # A copy: the caller's plan object (or the cached one) stays as it was tuned.
        plan = _copy_plan(plan, learning_rate=learning_rate_scaling(
            optimizer_name, plan.batch_size, wanted_ref))
    return plan


def _copy_plan(plan: Any, **changes: Any) -> Any:
    updated = dataclasses.replace(plan, **changes)
    updated.path = plan.path
    updated.cache_hit = plan.cache_hit
    return updated


def _generator_plan(model: Any, source: GeneratorSource, spec: InputSpec,
                    tune_options: dict[str, Any], *, verbose: int | str = "auto") -> Any:
    """A plan for a generator, which cannot be sent to the probe worker.

    Batched generators keep their own batch size (it is in the user's code). Single-example
    generators are tuned on a sample drawn as arrays: the model's memory and speed per batch
    depend on shapes, not on where the pixels came from.
    """
    from autobatch._generators import inspect_generator, sample_arrays
    from autobatch._plan import Plan
    from autobatch._settings import PipelineSettings

    if source.batched or _is_one_shot(source):
        if not source.batched:
            logger.warning(
                "a one-shot generator cannot be sampled for tuning without losing examples: "
                "training at batch size 32; pass a generator function or a plan to tune"
            )
        info, _ = inspect_generator(source, batch_size=32)
        return Plan(
            batch_size=info.batch_size,
            num_examples=info.num_examples or 0,
            ceiling_batch_size=info.batch_size,
            pipeline=PipelineSettings(),
            channels=spec.channels or 3,
            data={"kind": "generator", "path": None, "class_names": None},
            measured={"note": "generator batch size taken as given; not tuned"},
        )
    from autobatch._api import tune_events
    from autobatch._search import tune

    x, y = sample_arrays(source, max_examples=GENERATOR_SAMPLE_EXAMPLES)
    options = dict(tune_options)
    with tune_events(verbose, options.pop("on_event", None)) as on_event:
        tuned = tune(model, (x, y), on_event=on_event, **options)
    return _copy_plan(tuned, num_examples=source.num_examples or 0,
                      data={"kind": "generator", "path": None, "class_names": None})


def _plan_for(plan: Any, spec: InputSpec) -> Any:
    """The plan with the image size and channels the model takes (the model is the truth)."""
    changes: dict[str, Any] = {}
    if spec.image_size is not None and plan.image_size != spec.image_size:
        if plan.image_size is not None:
            logger.warning("the plan was tuned at %s px; the model takes %s px: using the model's",
                           plan.image_size, spec.image_size)
        changes["image_size"] = spec.image_size
    if spec.channels is not None and plan.channels != spec.channels:
        changes["channels"] = spec.channels
    return _copy_plan(plan, **changes) if changes else plan


def _pixels_for(plan: Any, model: Any, source: Any) -> Any:
    """The plan with float32 pixels where its uint8 cannot apply to this model or data (a
    plan tuned for another model, or applied to float arrays)."""
    if plan.pipeline.pixels != "uint8":
        return plan
    from autobatch._models import model_accepts_uint8
    from autobatch._pipeline import has_8bit_pixels

    if not has_8bit_pixels(source):
        why = "the data are not 8-bit images"
    elif not model_accepts_uint8(model, plan.image_size, plan.channels):
        why = "this model's output changes when given uint8 images"
    else:
        return plan
    logger.warning("the plan's uint8 pixels do not apply (%s): training with float32", why)
    return _copy_plan(plan, pipeline=plan.pipeline.replace(pixels="float32"))


def _optimizer_name(model: Any) -> str | None:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer
    return type(inner or optimizer).__name__


def apply_learning_rate(model: Any, plan: Any, *, scale_lr: bool) -> dict[str, Any]:
    """Report the plan's learning-rate factor, and apply it when ``scale_lr``.

    Returns:
        ``{reference_batch_size, batch_size, factor, rule, optimizer, applied,
        learning_rate_before, learning_rate_after}``.
    """
    lr = plan.learning_rate
    optimizer = getattr(model, "optimizer", None)
    before = _current_lr(optimizer)
    info = {
        "reference_batch_size": lr.reference_batch_size,
        "batch_size": plan.batch_size,
        "factor": lr.factor,
        "rule": lr.rule,
        "optimizer": lr.optimizer,
        "applied": False,
        "learning_rate_before": before,
        "learning_rate_after": before,
    }
    if not scale_lr:
        if lr.factor != 1.0:
            logger.info(
                "batch %d vs reference %d: a %s rule suggests learning rate x%.3g "
                "(pass scale_lr=True / --scale-lr to apply)",
                plan.batch_size, lr.reference_batch_size, lr.rule, lr.factor,
            )
        return info
    if before is None or optimizer is None:
        logger.warning("the optimizer's learning rate is a schedule or missing; not scaled")
        return info
    after = before * float(lr.factor)
    optimizer.learning_rate = after
    info.update(applied=True, learning_rate_after=after)
    logger.info("learning rate scaled x%.3g (%s rule): %.3g -> %.3g",
                lr.factor, lr.rule, before, after)
    return info


def _current_lr(optimizer: Any) -> float | None:
    if optimizer is None:
        return None
    import keras

    value = getattr(optimizer, "_learning_rate", None)
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule) or callable(value):
        return None
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- validation split


def split_source(source: Any, validation_split: float | None,
                 seed: int | None) -> tuple[Any, Any | None]:
    """Split a folder or arrays into disjoint training and validation sources.

    Stratified by class when labels are class indices (every class keeps its share), with
    the validation total ``round(n * validation_split)``; deterministic for a given seed.

    Raises:
        UsageError: the fraction is out of range, leaves a part empty, or the source is a
            generator (which cannot be split without reading it).
    """
    if not validation_split:
        return source, None
    if not 0.0 < float(validation_split) < 1.0:
        raise UsageError(f"validation_split must be between 0 and 1, got {validation_split}")
    if isinstance(source, GeneratorSource):
        raise UsageError(
            "validation_split cannot split a generator; pass validation_data=... instead"
        )
    import numpy as np

    n = source.num_examples
    n_val = int(round(n * float(validation_split)))
    if n_val < 1 or n_val >= n:
        raise UsageError(
            f"validation_split={validation_split} of {n} examples leaves "
            f"{'no validation' if n_val < 1 else 'no training'} examples; choose another fraction"
        )
    labels = _index_labels(source)
    rng = np.random.default_rng(DEFAULT_SPLIT_SEED if seed is None else seed)
    val_idx = _stratified_pick(labels, n, n_val, rng)
    mask = np.zeros(n, dtype=bool)
    mask[val_idx] = True
    train_idx = np.flatnonzero(~mask)
    val_idx = np.flatnonzero(mask)
    return _subset(source, train_idx), _subset(source, val_idx)


def _index_labels(source: Any) -> Any:
    import numpy as np

    if isinstance(source, FileSource):
        return np.asarray(source.labels)
    y = source.y
    if y is None:
        return None
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        return arr.argmax(axis=1)
    arr = arr.reshape(len(arr), -1)[:, 0] if arr.ndim > 1 else arr
    return arr if np.issubdtype(arr.dtype, np.integer) else None


def _stratified_pick(labels: Any, n: int, n_val: int, rng: Any) -> Any:
    import numpy as np

    if labels is None:
        return rng.permutation(n)[:n_val]
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * (n_val / n)
    take = np.floor(share).astype(int)
    # Largest remainder: the per-class picks add up to exactly n_val.
    for i in np.argsort(-(share - take), kind="stable")[: n_val - int(take.sum())]:
        take[i] += 1
    picked = []
    for cls, k in zip(classes, take, strict=False):
        members = np.flatnonzero(labels == cls)
        picked.append(rng.permutation(members)[:k])
    return np.concatenate(picked) if picked else np.zeros(0, dtype=int)


def _subset(source: Any, idx: Any) -> Any:
    if isinstance(source, FileSource):
        return FileSource(
            tuple(source.paths[i] for i in idx),
            tuple(source.labels[i] for i in idx),
            source.class_names,
            source.root,
            audit=source.audit,
        )
    y = None if source.y is None else source.y[idx]
    return ArraySource(source.x[idx], y)


# ---------------------------------------------------------------- pre-flight checks


def _output_units(model: Any) -> int | None:
    from autobatch._models import model_output_units

    try:
        return model_output_units(model)
    except (AttributeError, ValueError) as exc:
        if isinstance(exc, ModelError) and "outputs" in str(exc):
            raise
        return None


def loss_label_kind(model: Any) -> str:
    """What labels the compiled loss expects: ``"index"``, ``"one_hot"``, ``"binary"``,
    or ``"unknown"`` (custom losses are not second-guessed)."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    if isinstance(loss, str):
        name = loss
    else:
        name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__
        fn = getattr(loss, "fn", None)  # LossFunctionWrapper
        if fn is not None and getattr(fn, "__name__", None):
            name = fn.__name__
    name = str(name).lower()
    if name in _SPARSE_LOSSES or name.startswith("sparse_categorical"):
        return "index"
    if name in _ONE_HOT_LOSSES:
        return "one_hot"
    if name in _BINARY_LOSSES:
        return "binary"
    return "unknown"


def _label_kind_of(y: Any) -> str:
    import numpy as np

    if y is None:
        return "unknown"
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        return "one_hot"
    if arr.ndim <= 1 or (arr.ndim == 2 and arr.shape[1] == 1):
        return "index" if np.issubdtype(arr.dtype, np.integer) or _whole(arr) else "unknown"
    return "unknown"


def _whole(arr: Any) -> bool:
    import numpy as np

    return bool(arr.size) and np.issubdtype(arr.dtype, np.floating) and bool(
        np.all(np.mod(arr, 1) == 0))


def preflight(model: Any, source: Any) -> InputSpec:
    """Check before the first step that the model can take the data; one-line errors.

    Checks: the model's input rank, size and channels against the images (or arrays, or the
    generator's first element); the number of classes against the output units; the loss's
    label encoding (one-hot vs class indices) against the labels.

    Raises:
        DataError: the model cannot take the data; the message says how to fix it.
    """
    shape = model_input_shape(model)
    units = _output_units(model)
    loss_kind = loss_label_kind(model)
    if isinstance(source, FileSource):
        spec = _check_images(shape, source)
        num_classes: int | None = source.num_classes
        label_kind = "index"
    else:
        x_example, y_all, y_kind = _data_shapes(source)
        spec = _check_arrays(shape, x_example)
        label_kind = y_kind
        num_classes = _num_classes(y_all, label_kind)
    _check_labels(loss_kind, label_kind, units, num_classes, source)
    return InputSpec(spec[0], spec[1], label_kind, num_classes)


def _check_images(shape: Any, source: FileSource) -> tuple[tuple[int, int] | None, int | None]:
    if shape is None:
        raise DataError(
            "the model does not declare its input shape; build it first "
            "(model.build((None, H, W, C)) or an Input layer) so images can be resized to it"
        )
    if len(shape) != 3:
        raise DataError(
            f"the model takes inputs of shape {_fmt(shape)}, not images (height, width, "
            "channels); give it an image input such as keras.Input((H, W, 3))"
        )
    height, width, channels = shape
    if channels not in (1, 3, 4):
        raise DataError(
            f"the model takes {channels}-channel inputs; images convert to 1, 3 or 4 channels "
            "only: build the model with an input of 1 (gray), 3 (RGB) or 4 (RGBA) channels"
        )
    if height is None or width is None:
        raise DataError(
            f"the model takes any image size {_fmt(shape)}; build it with a fixed size "
            "(keras.Input((H, W, C))) so autobatch knows what to resize to"
        )
    return (int(height), int(width)), int(channels)


def _data_shapes(source: Any) -> tuple[tuple[int, ...], Any, str]:
    """Per-example x shape, the labels seen, and their kind, for arrays or a generator."""
    import numpy as np

    if isinstance(source, ArraySource):
        return tuple(np.shape(source.x)[1:]), source.y, _label_kind_of(source.y)
    from autobatch._generators import inspect_generator

    info, _ = inspect_generator(source, batch_size=1)
    first = info.first_element
    x = first[0] if isinstance(first, tuple) else first
    y = first[1] if isinstance(first, tuple) and len(first) > 1 else None
    x_shape = tuple(np.shape(x)[1:]) if info.batched else tuple(np.shape(x))
    if y is not None and not info.batched:
        y = np.asarray(y)[None, ...]  # one example: add the batch axis for the checks
    return x_shape, y, _label_kind_of(y)


def _check_arrays(shape: Any, x_example: tuple[int, ...]) -> tuple[Any, Any]:
    if shape is None:
        return None, None
    example = tuple(x_example)
    # (H, W) examples feed a (H, W, 1) model: the pipeline adds the channel axis.
    if len(example) == 2 and len(shape) == 3 and shape[2] == 1:
        example = (*example, 1)
    matches = len(example) == len(shape) and all(
        want is None or want == have for want, have in zip(shape, example, strict=False))
    if not matches:
        raise DataError(
            f"the model takes examples of shape {_fmt(shape)} but the data has {_fmt(example)}; "
            "resize/reshape the data or build the model for that shape"
        )
    return None, None


def _num_classes(y: Any, kind: str) -> int | None:
    import numpy as np

    if y is None:
        return None
    arr = np.asarray(y)
    if kind == "one_hot":
        return int(arr.shape[1])
    if kind == "index" and arr.size:
        return int(arr.max()) + 1
    return None


def _check_labels(loss_kind: str, label_kind: str, units: int | None, num_classes: int | None,
                  source: Any) -> None:
    loss = "the loss"
    if loss_kind == "one_hot" and label_kind == "index":
        raise DataError(
            f"{loss} expects one-hot labels (categorical_crossentropy) but the data gives class "
            "indices; compile with loss='sparse_categorical_crossentropy'"
        )
    if loss_kind == "index" and label_kind == "one_hot":
        raise DataError(
            f"{loss} expects class indices (sparse_categorical_crossentropy) but the labels are "
            "one-hot; compile with loss='categorical_crossentropy' or pass y.argmax(axis=1)"
        )
    if units is None or num_classes is None or loss_kind == "unknown":
        return
    if loss_kind == "binary":
        if units == 1 and num_classes <= 2:
            return
        if units == num_classes and label_kind == "one_hot":
            return
    exact = isinstance(source, FileSource) or label_kind == "one_hot"
    if (exact and units != num_classes) or (not exact and num_classes > units):
        what = "classes" if isinstance(source, FileSource) else (
            "label columns" if label_kind == "one_hot" else "classes (largest label + 1)")
        raise DataError(
            f"the data has {num_classes} {what} but the model outputs {units} units; "
            f"build the model's last layer with {num_classes} units"
        )


def _fmt(shape: Any) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")"


# ---------------------------------------------------------------- generators


def _with_generator_hints(source: Any, num_examples: int | None, batched: bool | None) -> Any:
    if not isinstance(source, GeneratorSource):
        if num_examples is not None or batched is not None:
            raise UsageError("num_examples= and batched= apply to generators only; remove them")
        return source
    changes: dict[str, Any] = {}
    if num_examples is not None:
        if num_examples < 1:
            raise UsageError(f"num_examples must be >= 1, got {num_examples}")
        changes["num_examples_hint"] = int(num_examples)
    if batched is not None:
        changes["batched"] = bool(batched)
    return dataclasses.replace(source, **changes) if changes else source


def _is_one_shot(source: GeneratorSource) -> bool:
    from autobatch._generators import is_py_dataset

    gen = source.generator
    return not is_py_dataset(gen) and not callable(gen) and hasattr(gen, "__next__")


def _detect_batched(model: Any, source: GeneratorSource) -> bool:
    """Batches or single examples? Compare the first element's rank with the model input's."""
    import numpy as np

    from autobatch._generators import inspect_generator, is_py_dataset

    if is_py_dataset(source.generator):
        return True
    shape = model_input_shape(model)
    if shape is None:
        return False
    info, _ = inspect_generator(dataclasses.replace(source, batched=False), batch_size=1)
    first = info.first_element
    x = first[0] if isinstance(first, tuple) else first
    return np.ndim(x) == len(shape) + 1


def _expected_examples(source: Any, dataset: Any) -> int | None:
    info = getattr(dataset, "autobatch_info", None)
    if info is not None:
        return info.num_examples
    return source.num_examples


def _steps(n: int | None, batch_size: int) -> int | None:
    return None if n is None else max(1, math.ceil(n / batch_size))
