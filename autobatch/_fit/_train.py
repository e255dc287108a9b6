"""``fit``: resolve the data and the model, check them, get the plan, build the tuned
pipeline and hand it to ``model.fit`` with every example trained on counted in the step.

The validation split is made on the source (file list / array indices) before any
batching, so training and validation never share an example and the plan's steps refer to
the training part only (``Source.split``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

from autobatch._data import Source, resolve_source
from autobatch._data._service import check_address, check_servable
from autobatch._errors import UsageError
from autobatch._fit._adapt import check_adaptable, fit_adaptively, objective_for, rungs_for
from autobatch._fit._coverage import (
    CoverageReport,
    counting_train_step,
    data_fault,
    make_coverage_callback,
)
from autobatch._fit._levers import build_as_planned
from autobatch._fit._lr import accumulating_as_planned, apply_learning_rate
from autobatch._fit._plans import adapt_plan, for_replicas, jit_as_planned, obtain_plan
from autobatch._fit._preflight import check_strategy, preflight
from autobatch._framework import require_tensorflow
from autobatch._models import check_model_file, model_input_shape
from autobatch._plan import load_plan
from autobatch._progress import Verbose

logger = logging.getLogger(__name__)

# Fit arguments the plan decides; passing them would undo the coverage guarantee or clash.
_PLAN_OWNED = ("batch_size", "x", "y", "validation_split", "shuffle")


def fit(
    model: Any,
    data: Any,
    *,
    epochs: int = 1,
    plan: Any = None,
    validation_split: float | None = None,
    seed: int | None = None,
    callbacks: list[Any] | None = None,
    verbose: Verbose = "auto",
    image_size: int | tuple[int, int] | None = None,
    num_examples: int | None = None,
    batched: bool | None = None,
    max_pixels: int | None = None,
    parse: Callable[[Any], Any] | None = None,
    label_mode: str | None = None,
    augment: Any = None,
    time_budget: float | None = None,
    memory_budget: str | int | None = None,
    pixels: str | None = None,
    scale_lr: bool = False,
    reference_batch_size: int | None = None,
    tune_options: dict[str, Any] | None = None,
    on_epoch: Callable[[Any], None] | None = None,
    strategy: Any = None,
    data_service: str | None = None,
    effective_batch_size: int | None = None,
    objective: str | None = None,
    adapt: bool = False,
    **fit_kwargs: Any,
) -> Any:
    """Tune (or reuse the cached plan) and train, counting the examples of every epoch.

    ``model.fit`` runs on the tuned pipeline with ``steps_per_epoch = ceil(N / batch)``,
    so every usable example is trained on exactly once per epoch; the count made inside
    the training step is checked against the usable count at the end of each epoch.

    Args:
        model: a compiled ``keras.Model``, a ``.keras`` path, or a built-in name.
        data: an image folder, ``(x, y)`` arrays, a generator function, a generator, or a
            ``keras.utils.PyDataset``.
        epochs: epochs to train.
        plan: a ``Plan`` or plan file path; None tunes first (``autobatch.tune`` with the
            same model and data returns its cached plan at once).
        validation_split: fraction held out for validation (folders, arrays), by class.
        seed: seed of the split and of the per-epoch shuffle.
        callbacks: Keras callbacks.
        verbose: Keras' meaning (``"auto"``, 0, 1, 2): for the tune's progress display
            (as in ``autobatch.tune``) and for ``model.fit``.
        image_size: input size of a built-in model SPEC (a built model's own is used).
        num_examples: examples in one epoch of a generator; required for a generator
            object and for an endless generator function (a generator function without it
            is counted in one extra pass, which an endless one fails).
        batched: a generator yields batches (True) or single examples (False); None
            detects it from the model's input rank.
        max_pixels: an image folder's pixel limit (``--max-pixels``; width x height read
            from the header; default 178,956,970): a larger image is left out, never decoded.
        parse: with ``data`` a folder or glob of TFRecord shards: the function of one
            serialized record that returns ``(x, y)`` (``--parse module:function``).
        label_mode: class indices fed as ``"int"``, ``"categorical"`` (one-hot) or
            ``"binary"`` (Keras' meaning); None: chosen from the loss (one-hot for
            ``categorical_crossentropy``, 0/1 for ``binary_crossentropy`` on two classes).
        augment: a function of one image (``augment(image)``, or ``augment(image, seed)``
            for ``tf.image.stateless_random_*``) or Keras preprocessing layers, applied to the
            training data after the cache: new pixels every epoch, a seeded run repeats; the
            tune measures the pipeline with it.
        time_budget: tuning time limit in seconds (``--time-budget``).
        memory_budget: tuning memory budget (``--memory-budget``).
        pixels: tuning pixel dtype, ``"auto"``, ``"float32"`` or ``"uint8"`` (``--pixels``).
        scale_lr: apply the plan's learning-rate factor (else it is only reported).
        reference_batch_size: the batch size the compiled learning rate was chosen for.
        tune_options: further ``autobatch.tune`` keyword arguments (``trials``, ...).
        on_epoch: called with each epoch's coverage record.
        strategy: ``"none"``, ``"mirrored"``, ``"auto"`` or a
            ``tf.distribute.MirroredStrategy`` (``--strategy``; see ``autobatch.tune``);
            None: the strategy the model was built under. A model given as a file or a
            built-in name is built in its scope; a ``keras.Model`` must have been built
            there. The plan's ``batch_size`` is the global batch, split across replicas.
        data_service: ``grpc://HOST:PORT`` of a tf.data service dispatcher
            (``--data-service``): the examples are read, decoded and resized on its
            workers in ``distributed_epoch`` mode (each once per epoch) and batched here;
            the tune measures the pipeline there too.
        effective_batch_size: examples per weight update (``--effective-batch-size``; see
            ``autobatch.tune``): where memory caps the batch below it, the plan's
            micro-batches are accumulated (the optimizer's ``gradient_accumulation_steps``,
            given back after fit); the optimizer must not be built yet.
        objective: the tune's objective, ``"throughput"`` or ``"goodput"`` (see
            ``autobatch.tune``); None: goodput with ``adapt``, else throughput.
        adapt: re-estimate the gradient noise scale during training (from the gradients
            each step computes anyway) and move the batch between epochs among the plan's
            verified batch sizes, each on its tuned pipeline, by goodput; the learning rate
            moves with it by the plan's rule. Every epoch is still one whole pass;
            ``history.history["batch_size"]`` and ``["noise_scale"]`` record each epoch,
            ``history.adapt`` the moves. One device, no effective batch.
        **fit_kwargs: passed to ``model.fit`` (``validation_data``, ``class_weight``, ...).

    Returns:
        The Keras ``History`` with ``history.plan``, ``history.coverage``,
        ``history.learning_rate``, ``history.steps_per_epoch``, ``history.tune_time_s``
        (seconds spent getting the plan), ``history.num_replicas`` (a model built under a
        ``tf.distribute`` strategy trains the plan's batch as the global batch, split
        across them) and ``history.history["examples_seen"]`` (summed across replicas).

    Raises:
        UsageError: a pre-flight check failed, an argument the plan owns was passed, or
            the data cannot be trained on as given (one class, an endless generator
            without ``num_examples``); Keras 3 ``fit`` under MultiWorkerMirroredStrategy,
            or with gradient accumulation under a strategy (Keras bugs 20585, 20582).
        DataError: an input file vanished, became unreadable or stopped decoding during
            training: the message names it, the examples trained so far and the epoch's
            shortfall; ``error.coverage`` holds the epochs up to the failed one.
    """
    tune_options = dict(tune_options or {})
    objective = objective_for(objective, adapt)
    # The tune's own options, given to fit directly, join tune_options.
    data_service = check_address(data_service)
    for name, value in (("time_budget", time_budget), ("memory_budget", memory_budget),
                        ("pixels", pixels), ("image_size", image_size), ("augment", augment),
                        ("data_service", data_service),
                        ("effective_batch_size", effective_batch_size),
                        ("objective", objective)):
        if value is not None:
            tune_options[name] = value
    for name in _PLAN_OWNED:
        if name in fit_kwargs:
            raise UsageError(
                f"fit() chooses {name} itself; remove {name}=... (use validation_split= "
                "of autobatch.fit, or pass a plan to fix the batch size)"
            )
    if epochs < 1:
        raise UsageError("{param} must be >= 1, got " + str(epochs), parameter="epochs")
    user_steps = fit_kwargs.get("steps_per_epoch")
    check_model_file(model)  # a bad model file is refused before TensorFlow starts
    require_tensorflow("training")
    source = resolve_source(data, num_examples=num_examples, batched=batched,
                            max_pixels=max_pixels, parse=parse)
    source.check_learnable()
    if data_service is not None:
        check_servable(source)
    model_spec = model if isinstance(model, (str, os.PathLike)) else None
    strategy_spec, live_strategy = _strategy_for(strategy, model)
    if strategy_spec is not None:
        tune_options["strategy"] = strategy_spec
    with live_strategy.scope() if live_strategy is not None else contextlib.nullcontext():
        model = _resolve_model(model, source, image_size=tune_options.get("image_size"))
    source = source.prepared(model_input_shape(model), steps_given=user_steps is not None)
    train_source, val_source = (source, None) if not validation_split else source.split(
        validation_split, seed)

    spec = preflight(model, train_source, label_mode)
    replicas = check_strategy(model)
    if adapt:  # before the tune: a refusal should not cost one
        check_adaptable(None, replicas=replicas, user_steps=user_steps,
                        effective_batch_size=tune_options.get("effective_batch_size"),
                        fixed_batch_size=train_source.fixed_batch_size)
    plan, tune_time_s = obtain_plan(model, train_source, spec, plan, tune_options=tune_options,
                                    model_spec=model_spec, verbose=verbose, epochs=epochs)
    plan = for_replicas(adapt_plan(plan, spec, model, train_source, reference_batch_size),
                        replicas)
    model = build_as_planned(model, plan, rebuildable=model_spec is not None,
                             strategy=live_strategy)  # the plan's mixed precision, remat
    rungs = rungs_for(plan) if adapt else None

    def endless_steps(batch_plan: Any) -> int | None:
        """Steps per epoch where folders and arrays train from one endless iterator (the
        next epoch's first batches prepared while the last ones train, each pass still
        exactly one epoch); None: one pass of the dataset is one epoch."""
        epoch = train_source.epoch(batch_plan.batch_size)
        endless = user_steps is None and train_source.endless_epochs and bool(
            epoch.num_examples)
        return epoch.steps if endless else None

    def inputs(batch_plan: Any, segment: int = 0) -> tuple[Any, int | None]:
        """The training dataset at ``batch_plan``'s batch and its ``endless_steps``."""
        steps = endless_steps(batch_plan)
        shuffle_seed = seed + segment if seed is not None else None  # (a new order per run)
        train_ds = batch_plan.dataset(train_source, shuffle=True, seed=shuffle_seed,
                                      repeat=steps is not None, label_mode=spec.label_mode,
                                      augment=augment, data_service=data_service)
        if user_steps is not None:
            # The dataset is one epoch long; repeat it so user steps can run across epochs.
            train_ds = train_ds.repeat()
        return train_ds, steps

    epoch = train_source.epoch(plan.batch_size)
    # The adaptive runs build their own, one per batch.
    train_ds = inputs(plan)[0] if rungs is None else None
    steps = endless_steps(plan)
    report = CoverageReport(expected_examples=epoch.num_examples)
    if epoch.note:
        report.uneven_last_batch = epoch.last_batch_size
        report.notes.append(epoch.note)

    short_cause = None
    if steps is not None:
        fit_kwargs["steps_per_epoch"] = steps
    elif user_steps is not None:
        short_cause = (
            f"steps_per_epoch={user_steps} was passed; leave it out so one epoch is one pass "
            f"({epoch.steps} steps of {plan.batch_size})"
        )
        report.notes.append(short_cause)
    if val_source is not None:
        fit_kwargs["validation_data"] = plan.dataset(val_source, shuffle=False, seed=seed,
                                                     label_mode=spec.label_mode,
                                                     data_service=data_service)

    lr_info = apply_learning_rate(model, plan, scale_lr=scale_lr)
    fit_kwargs["verbose"] = verbose
    with jit_as_planned(model, plan), accumulating_as_planned(model, plan, replicas), \
            counting_train_step(model) as counter, warnings.catch_warnings():
        if user_steps is None:
            # A generator's length is unknown to Keras until its first pass ends; Keras then
            # warns that the input "ran out of data". The coverage check reports real
            # shortfalls, with their cause, so that warning would only mislead.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        coverage_cb = make_coverage_callback(counter, report, noun=train_source.noun,
                                             short_cause=short_cause, on_epoch=on_epoch)
        # shuffle=False: the pipeline reshuffles every epoch itself; Keras ignores (and
        # warns about) shuffle for a tf.data input.
        try:
            if rungs is not None:
                history = fit_adaptively(model, plan, rungs, inputs, epochs=epochs,
                                          callbacks=[coverage_cb], user_callbacks=callbacks,
                                          fit_kwargs=fit_kwargs)
            else:
                history = model.fit(train_ds, epochs=epochs, shuffle=False,
                                    callbacks=[coverage_cb, *(callbacks or [])], **fit_kwargs)
        except Exception as exc:
            # Data that changed under fit (a file deleted or overwritten after indexing) is
            # an error, not a warning: TensorFlow's iterator cannot go on past the failed
            # element, and skipping files would leave the epoch's count meaningless.
            fault = data_fault(exc, counter, report, [train_source, val_source],
                               noun=train_source.noun)
            if fault is None:
                raise
            raise fault from None
    history.plan = plan
    history.coverage = report
    history.learning_rate = lr_info
    history.tune_time_s = tune_time_s
    history.steps_per_epoch = user_steps if user_steps is not None else epoch.steps
    history.num_replicas = replicas  # the plan's batch is the global one, split across them
    history.adapt = getattr(history, "adapt", None)  # (fit_adaptively sets its record)
    if report.complete and report.epochs:
        logger.info("coverage: every epoch trained on all %d usable %s",
                    report.epochs[-1].examples_seen, train_source.noun)
    return history


def dataset(
    data: Any,
    plan: Any = None,
    *,
    model: Any = None,
    repeat: bool = False,
    shuffle: bool = True,
    seed: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    tune_options: dict[str, Any] | None = None,
    strategy: Any = None,
    data_service: str | None = None,
) -> Any:
    """The tuned, batched ``tf.data.Dataset`` for ``data`` (for custom training loops).

    Args:
        data: an image folder, ``(x, y)`` arrays, a generator, or a PyDataset.
        plan: a ``Plan`` or plan file path; None tunes ``model`` on ``data`` first.
        model: the model to tune for when no plan is given.
        repeat: endless whole epochs (``model.fit(..., **plan.fit_kwargs())``); else one
            pass is one epoch.
        shuffle: reshuffle every epoch.
        seed: shuffle seed.
        image_size: resize images to this instead of the plan's image size.
        tune_options: ``autobatch.tune`` keyword arguments when tuning.
        strategy: the strategy the dataset feeds (see ``autobatch.tune``): tuned under it
            when no plan is given, and batched at the global batch for its replicas
            (``strategy.experimental_distribute_dataset`` splits it, as Keras' fit does).
        data_service: ``grpc://HOST:PORT``: the examples are made on that tf.data service
            (see ``autobatch.fit``).

    Returns:
        The dataset over every usable example.
    """
    from autobatch._distribute import resolve_strategy, visible_replicas

    spec = resolve_strategy(strategy, model)
    if plan is None:
        if model is None:
            raise UsageError("dataset() needs a plan or a model to tune for; pass plan= or model=")
        from autobatch._search import tune

        plan = tune(model, data, **{**(tune_options or {}), "strategy": spec,
                                    "data_service": data_service})
    require_tensorflow("a tf.data pipeline")
    plan = load_plan(plan)
    if strategy is not None:  # the plan as it is, unless asked for another set-up
        replicas = int(getattr(strategy, "num_replicas_in_sync", 0) or visible_replicas(spec))
        plan = for_replicas(plan, replicas)
    return plan.dataset(
        data, shuffle=shuffle, seed=seed, repeat=repeat, image_size=image_size,
        data_service=data_service)


def _strategy_for(strategy: Any, model: Any) -> tuple[Any, Any]:
    """The ``StrategySpec`` to tune under and the live strategy to build ``model`` in (None
    for a ``keras.Model``, built already, or for one device).

    Raises:
        UsageError: an unsupported strategy, or a ``keras.Model`` built outside the scope of
            a several-replica strategy given here.
    """
    from autobatch._distribute import (
        StrategySpec,
        build_strategy,
        model_strategy,
        refuse_unsupported,
        resolve_strategy,
        visible_replicas,
    )

    live_model = not isinstance(model, (str, os.PathLike))
    spec = strategy if isinstance(strategy, StrategySpec) else resolve_strategy(
        strategy, model if live_model else None)
    if spec is None:
        return None, None
    if live_model:
        if model_strategy(model) is None and visible_replicas(spec) <= 1:
            logger.info("strategy=%r has one device here: training as without one", strategy)
            return None, None
        if model_strategy(model) is None:
            raise UsageError(
                "the model was built outside a strategy's scope; build and compile it inside "
                "`with strategy.scope():` (or pass it as a .keras file or built-in name, "
                "which autobatch builds there)")
        return spec, None
    if strategy is not None and not isinstance(strategy, (str, StrategySpec)):
        refuse_unsupported(strategy)
        return spec, strategy
    return spec, build_strategy(spec)


def _resolve_model(model: Any, source: Source, *, image_size: Any) -> Any:
    import keras

    from autobatch._models import resolve_model

    if isinstance(model, keras.Model):
        if not model.compiled:
            raise UsageError(
                "the model is not compiled; call model.compile(optimizer=..., loss=...) first"
            )
        return model
    return resolve_model(model, num_classes=source.num_classes or 0, image_size=image_size)
