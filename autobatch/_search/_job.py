"""A tune's inputs made concrete before any probe (``TuneJob``): the model spec, the data
source and its size, the geometry, the memory budgets, and the fingerprints that key the
plan cache and the study."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from autobatch._data import Source, resolve_source
from autobatch._data._augment import augment_key
from autobatch._data._service import check_servable
from autobatch._env import environment
from autobatch._errors import UsageError
from autobatch._models import (
    builtin_image_size,
    is_builtin,
    model_function_spec,
)
from autobatch._models._files import check_model_file
from autobatch._plan import (
    hardware_fingerprint,
    model_fingerprint,
    options_fingerprint,
    software_fingerprint,
    tune_geometry,
)
from autobatch._probe._budgets import resolve_budgets
from autobatch._search._config import TuneConfig
from autobatch._search._study import study_name_for
from autobatch._settings import check_pixels_request


@dataclass(frozen=True)
class TuneJob:
    """What one tune runs on."""

    model: Any
    """The model as the worker gets it: a built-in name, an absolute ``.keras`` path, a
    ``"module:function"`` spec, or a ``keras.Model``."""
    source: Source
    count: int
    """Examples per epoch."""
    num_classes: int | None
    size: tuple[int, int] | None
    channels: int
    env: Any
    host_budget_bytes: int | None
    device_budget_bytes: int | None
    fingerprints: dict[str, str]
    """The plan cache's key (the options with the time budget and the trial count)."""
    study_name: str
    """The study's name: the same fingerprints without time budget and trials, so that a
    longer tune resumes a shorter one's study."""


def model_spec(model: Any) -> Any:
    """The model as it travels (and fingerprints): a model-building function as
    ``"module:function"``, a file by its absolute path (the plan names a file that any
    folder can find); an unknown name, or a file that is no ``.keras`` model, is an error."""
    model = model_function_spec(model) or model
    # A file that is no .keras model (missing, a folder, a text file): one line, now,
    # before any probe and before TensorFlow starts.
    check_model_file(model)
    if isinstance(model, (str, os.PathLike)) and not is_builtin(model) and os.path.isfile(model):
        model = os.path.abspath(model)
    return model


def open_source(data: Any, config: TuneConfig) -> Source:
    """The source of ``data`` with the config's data options; a missing folder, one class or
    one image is an error here, before anything else (one class has nothing to tune for)."""
    num_examples = config.num_examples
    # TFRecord shards take num_examples in place of their count.
    source = resolve_source(data, max_pixels=config.max_pixels, parse=config.parse,
                            num_examples=num_examples if config.parse is not None else None)
    source.check_learnable()
    if config.data_service is not None:
        check_servable(source)  # a generator, arrays, Python code: refused before any probe
    if num_examples is not None:
        # As fit applies it: a generator's or a dataset's epoch length (others know theirs).
        source = source.with_num_examples(num_examples)
    return source


def prepare_job(model: Any, source: Source, config: TuneConfig) -> TuneJob:
    """Check the model and the data (``open_source``) and work out everything the cache and
    the search need, in the order a user should hear of a problem."""
    model = model_spec(model)
    # The size and channels from the model when not given, as fit computes them: the two
    # must fingerprint alike for fit to find tune's plan in the cache.
    size, channels = tune_geometry(model, config.image_size, config.channels)
    if is_builtin(model):
        builtin_image_size(model, size)  # a built-in SPEC needs an image size
    env = environment()
    host_budget, device_budget, _ = resolve_budgets(config.memory_budget, env)
    # What fit would refuse (a batched tf.data.Dataset, an epoch without an end) is
    # refused here too, before any probe.
    source = source.prepared((*size, channels) if size else None, steps_given=False)
    count = source.num_examples
    if not count:
        raise UsageError("the number of examples per epoch is unknown; pass {param}=N",
                         parameter="num_examples")
    num_classes = source.num_classes
    check_pixels_request(config.pixels, eight_bit=source.eight_bit)
    options = search_options(config, size, channels)
    fingerprints = {
        "model": model_fingerprint(model, num_classes=num_classes, image_size=size,
                                   channels=channels),
        "data": source.fingerprint(),
        "hardware": hardware_fingerprint(env),
        "tensorflow": software_fingerprint(),
        "options": options_fingerprint(
            {**options, "time_budget_s": config.time_budget_s, "trials": config.trials}
        ),
    }
    study_name = study_name_for({**fingerprints, "options": options_fingerprint(options)})
    return TuneJob(model=model, source=source, count=count, num_classes=num_classes,
                   size=size, channels=channels, env=env, host_budget_bytes=host_budget,
                   device_budget_bytes=device_budget, fingerprints=fingerprints,
                   study_name=study_name)


def search_options(config: TuneConfig, size: tuple[int, int] | None,
                   channels: int) -> dict[str, Any]:
    """The options that shape what the search measures (the study's part of the key)."""
    return {
        "image_size": list(size) if size else None,
        "channels": channels,
        "memory_budget": config.memory_budget if config.memory_budget is None
        else str(config.memory_budget),
        "seed": config.seed,
        "measure_baseline": config.measure_baseline,
        "try_xla": config.try_xla,
        "max_batch_size": config.max_batch_size,
        "trial_steps": config.trial_steps,
        "search_space": config.search_space.to_dict() if config.search_space is not None
        else None,
        "pixels": config.pixels,
        # Only when given: plans tuned on one device keep their cache keys.
        **({"strategy": config.strategy.key()} if config.strategy is not None else {}),
        **({"data_service": config.data_service} if config.data_service is not None else {}),
        **({"effective_batch_size": config.effective_batch_size}
           if config.effective_batch_size is not None else {}),
        # Only when off: plans tuned with levers tried keep their cache keys.
        **({"try_levers": False} if not config.try_levers else {}),
        # Only when not the default: throughput plans keep their cache keys.
        **({"objective": config.objective} if config.objective != "throughput" else {}),
        # Only when given: plans tuned without augmentation keep their cache keys.
        **({"augment": augment_key(config.augment)} if config.augment is not None else {}),
    }
