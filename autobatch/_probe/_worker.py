"""The probe worker: holds the model, the data source and the traced train step, and runs
probes (TensorFlow is imported by its methods, never at import).

Built from the parent's config in the worker process (``Worker.from_config``, run by
``autobatch._probe._main``) or from an in-memory model and source (``InProcessProbeRunner``).
Memory in one worker is not given back between probes: probe in ascending batch order.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import tempfile
import threading
import time
import traceback
from typing import Any

from autobatch._data import build_dataset
from autobatch._data._augment import rebuild_augment
from autobatch._data._labels import label_mode_for
from autobatch._distribute import (
    StrategySpec,
    apply_device_setup,
    build_strategy,
    model_strategy,
    strategy_devices,
)
from autobatch._models import model_accepts_uint8, model_input_shape
from autobatch._models._levers import apply_levers, lever_key, levers_in_effect
from autobatch._models._losses import loss_label_kind
from autobatch._probe._data_io import load_source, probe_subset
from autobatch._probe._failures import is_oom
from autobatch._probe._memory import (
    nvml_process_memory_bytes,
    peak_rss_bytes,
    read_status_bytes,
    release_free_heap,
    reset_peak_rss,
)
from autobatch._probe._model_io import load_model
from autobatch._probe._timing import epoch_timer, fetch_into, summarize_steps
from autobatch._probe._types import MAX_STEPS_FACTOR, Outcome, ProbeRequest, ProbeResult

logger = logging.getLogger(__name__)


def configure_gpus() -> str:
    """Turn on memory growth on every GPU (the allocator's peak then reflects what the probe
    needs, not TF's default grab of the whole card); returns the device probes run on."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # already initialised (in-process runner), or split into logical GPUs
    return "GPU:0" if gpus else "cpu"


def detect_device() -> str:
    """The device probes run on, leaving the GPUs' settings as they are."""
    import tensorflow as tf

    return "GPU:0" if tf.config.list_physical_devices("GPU") else "cpu"


class Worker:
    """Holds the model, the data source and the traced train step; runs probes.

    Args:
        model: the compiled ``keras.Model``.
        source: the data source the probes read.
        image_size: the input size (by default the model's, when it declares one).
        channels: the input channels (by default the model's).
        seed: shuffle seed of the probe pipelines.
        cache_dir: folder of disk-cached probes (a temporary folder when None).
        device: ``"cpu"`` or ``"GPU:0"``, where the memory peaks are read.
        augment: the augmentation training applies after the cache (probes measure it).
        data_service: ``grpc://HOST:PORT``: the probes' examples are made there.
        strategy: the ``tf.distribute`` strategy the model was built under (by default the
            model's own): a probe's batch is then per replica, its dataset batches the
            global batch (per replica x replicas), the loop steps through the strategy's
            distributed dataset, and every replica device's peak is read.
    """

    def __init__(self, model: Any, source: Any, *,
                 image_size: tuple[int, int] | None = None,
                 channels: int | None = None, seed: int = 0, cache_dir: str | None = None,
                 device: str = "cpu", augment: Any = None, strategy: Any = None,
                 data_service: str | None = None, loader: Any = None) -> None:
        self.data_service = data_service
        self.model = model
        self.strategy = strategy if strategy is not None else model_strategy(model)
        self.num_replicas = int(self.strategy.num_replicas_in_sync) if self.strategy else 1
        replica_devices = strategy_devices(self.strategy)
        gpus = [d.lstrip("/").upper() for d in replica_devices if "gpu" in d]
        # Where the device peaks are read: every replica's GPU (the tightest decides).
        self.gpu_devices = gpus or ([device] if device != "cpu" else [])
        self.source = source
        self.device = device
        shape = model_input_shape(model) or ()
        self.image_size: tuple[int, int] | None = image_size or (
            (shape[0], shape[1]) if len(shape) == 3 and shape[0] and shape[1] else None)
        self.channels = channels or (shape[-1] if len(shape) == 3 else None)
        self.seed = int(seed)
        self.cache_dir = cache_dir
        # The labels as the model's loss takes them, by the rule fit's pre-flight uses.
        self.label_mode = label_mode_for(loss_label_kind(model), source.label_spec())
        self.augment = augment  # what training applies after the cache: probes measure it
        self._steps: dict[tuple[Any, bool, str], Any] = {}
        self._built: set[Any] = set()
        self.probes_served = 0
        # The model under each lever setting asked so far (``_models._levers``): switching
        # back and forth between probes costs one rebuild and one trace each, like XLA's.
        self._levers: tuple[str | None, str | None] = (None, None)
        self._models: dict[tuple[str | None, str | None], Any] = {self._levers: model}
        self.loader = loader
        """Loads the model afresh (a worker built from a config): a memory probe with a
        lever then holds only its own model, not the one as given beside it."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Worker:
        """The worker the parent's config describes: GPUs set up, then data and model
        rebuilt (``write_data_description`` and ``describe_model`` wrote the config)."""
        spec = StrategySpec.from_dict(config.get("strategy"))
        apply_device_setup(spec)  # the parent's logical devices, before TF starts them
        device = configure_gpus()
        source = load_source(config["data"])
        strategy = build_strategy(spec)
        # Built (or loaded) under the strategy's scope: its variables are mirrored.
        def loader() -> Any:
            with strategy.scope() if strategy is not None else contextlib.nullcontext():
                return load_model(config["model"], source)

        model = loader()
        size = config.get("image_size")
        return cls(model, source, image_size=(int(size[0]), int(size[1])) if size else None,
                   channels=config.get("channels"), seed=int(config.get("seed", 0)),
                   cache_dir=config.get("cache_dir"), device=device,
                   augment=rebuild_augment(config.get("augment")), strategy=strategy,
                   data_service=config.get("data_service"), loader=loader)

    def accepts_uint8(self) -> bool:
        """Whether uint8 batches can be built (8-bit images) and the model gives the same
        output for them as for float32 (``autobatch._models.model_accepts_uint8``)."""
        return bool(self.source.eight_bit and model_accepts_uint8(
            self.model, self.image_size, self.channels))

    # ---- the train step, traced once per jit setting and input dtype, any batch size
    def _scope(self) -> Any:
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def step_function(self, element_spec: Any, jit_compile: bool,
                      local_spec: Any = None) -> Any:
        """The traced train step for batches of ``element_spec`` (a distributed dataset's
        under a strategy; ``local_spec`` is then the undistributed one's)."""
        import tensorflow as tf

        local_spec = element_spec if local_spec is None else local_spec
        if self._levers not in self._built:
            # Build model, loss, metrics and optimizer state outside the traced function,
            # as fit does, so tracing never creates variables.
            # Shapes and dtypes are all it reads, so the element spec stands in for a batch.
            with self._scope():
                self.model._symbolic_build(data_batch=local_spec)
            self._built.add(self._levers)
        key = (self._levers, bool(jit_compile), str(local_spec[0].dtype.name))
        step = self._steps.get(key)
        if step is None:
            model = self.model

            def one_step(data: Any) -> Any:
                return model.distribute_strategy.run(model.train_step, args=(data,))

            # input_signature = the dataset's element spec, whose batch dim is None: one
            # trace serves every batch size (no retrace per probe).
            step = tf.function(one_step, input_signature=[element_spec],
                               jit_compile=bool(jit_compile), reduce_retracing=True)
            self._steps[key] = step
        return step

    def _source_for(self, request: ProbeRequest) -> tuple[Any, int, str | None]:
        """The source a probe reads, the batches read untimed to fill its cache, the cache
        folder.

        A cache pays off from the second epoch on, which a probe of a few steps never
        reaches. So a cached probe reads a subset of the data just large enough for its
        timed steps, passes over it once untimed without training (filling the cache), and
        times the following passes: the steady state ``fit`` sees after its first epoch.
        """
        if request.settings.cache == "none":
            return self.source, 0, self.cache_dir
        batch = request.batch_size * self.num_replicas
        count = min(self.source.num_examples or 0, batch * max(1, request.steps))
        source = probe_subset(self.source, count)
        if source is None:
            return self.source, 0, self.cache_dir
        fill_steps = -(-count // batch)
        cache_dir = None
        if request.settings.cache == "disk":
            # A fresh folder per probe: a cache file is tied to the data it was filled from.
            if self.cache_dir:
                os.makedirs(self.cache_dir, exist_ok=True)
            cache_dir = tempfile.mkdtemp(prefix="probe-cache-", dir=self.cache_dir)
        return source, fill_steps, cache_dir

    def trace_count(self) -> int:
        total = 0
        for step in self._steps.values():
            try:
                total += int(step.experimental_get_tracing_count())
            except Exception:
                pass
        return total

    def probe(self, request_data: dict[str, Any]) -> dict[str, Any]:
        """Run one probe; returns a ``ProbeResult`` dict (never raises for the model's
        failures: OOM -> ``oom``, any other exception -> ``crash``)."""
        request = ProbeRequest.from_dict(request_data)
        self.probes_served += 1
        base: dict[str, Any] = {
            "batch_size": request.batch_size, "settings": request.settings,
            "jit_compile": request.jit_compile, "mode": request.mode, "device": self.device,
            "worker_pid": os.getpid(), "worker_probe_number": self.probes_served,
            "num_replicas": self.num_replicas}
        if request.mixed_precision is not None or request.remat is not None:
            base |= {"mixed_precision": request.mixed_precision, "remat": request.remat}
        try:
            self._use_levers(request)
            if request.mixed_precision is not None or request.remat is not None:
                base["compute_dtype"] = levers_in_effect(self.model)["compute_dtype"]
            measured = self._run(request)
        except BaseException as exc:  # noqa: BLE001 - the whole point is to report it
            if isinstance(exc, KeyboardInterrupt):
                raise
            outcome: Outcome = "oom" if is_oom(exc) else "crash"
            lines = traceback.format_exception_only(type(exc), exc)
            text = "".join(lines).strip().splitlines()
            logger.error("probe failed: %s", "".join(traceback.format_exception(exc)))
            result = ProbeResult(outcome=outcome, error="\n".join(text[-8:]),
                                 peak_host_memory_bytes=peak_rss_bytes(), **base)
            return result.to_dict()
        return ProbeResult(outcome="ok", **base, **measured).to_dict()

    def _use_levers(self, request: ProbeRequest) -> None:
        """Make ``self.model`` the model under the request's levers (rebuilt on first use);
        a memory probe (``own_peak``) keeps only its own model where the worker can load it
        afresh, so that its peak does not count the model as given beside it."""
        key = lever_key(request.mixed_precision, request.remat)
        model = self._models.get(key)
        if model is None:
            base = self._models.get((None, None))
            if request.own_peak and self.loader is not None:
                self._models.clear()
                self.model = base = None
                self._steps.clear()
                self._built.clear()
                gc.collect()
            base = self.loader() if base is None else base
            with self._scope():
                model = apply_levers(base, mixed_precision=key[0], remat=key[1])
            del base
            self._models[key] = model
        self.model, self._levers = model, key

    def _run(self, request: ProbeRequest) -> dict[str, Any]:
        import tensorflow as tf

        gc.collect()
        release_free_heap()
        reset_peak_rss()
        baseline_host = read_status_bytes("VmRSS")
        for gpu in self.gpu_devices:
            try:
                tf.config.experimental.reset_memory_stats(gpu)
            except Exception:
                pass
        started = time.perf_counter()
        source, fill_steps, cache_dir = self._source_for(request)
        # The request's batch is per replica; the pipeline batches the global batch, which
        # the strategy splits across the replicas (as Keras' fit does with it).
        dataset = build_dataset(
            source, batch_size=request.batch_size * self.num_replicas,
            settings=request.settings,
            image_size=self.image_size, channels=self.channels, shuffle=True, seed=self.seed,
            cache_dir=cache_dir, repeat=True, label_mode=self.label_mode,
            augment=self.augment, data_service=self.data_service,
        )
        noise = None
        if request.noise_small_batch and self.num_replicas == 1:
            from autobatch._noise import estimate_from_batches

            # At the weights the model was loaded with, before any timed step moves them.
            noise = estimate_from_batches(self.model, iter(dataset),
                                          request.noise_small_batch).to_dict()
        if request.mode == "fit":
            measured = self._time_fit(dataset, request)
        else:
            measured = self._time_loop(dataset, request, fill_steps)
        del dataset
        # Where a probe's time goes (the tune's time table): the timed steps, and the rest.
        measured["timed_s"] = round(float(sum(measured.get("step_times_s") or [])) * (
            request.steps if request.mode == "fit" else 1), 4)
        measured["setup_s"] = round(time.perf_counter() - started - measured["timed_s"], 4)
        peak_host = peak_rss_bytes()
        peak_device = nvml_bytes = None
        replica_peaks = []
        for gpu in self.gpu_devices:
            try:
                replica_peaks.append(int(tf.config.experimental.get_memory_info(gpu)["peak"]))
            except Exception:
                pass
        if self.gpu_devices:
            # Every replica's device was read; the tightest (largest peak) decides.
            peak_device = max(replica_peaks) if replica_peaks else None
            nvml_bytes = nvml_process_memory_bytes(os.getpid())
        return measured | {
            "noise_scale": noise,
            "replica_peak_device_memory_bytes": replica_peaks if len(replica_peaks) > 1
            else None,
            "worker_trace_count": self.trace_count(),
            "peak_host_memory_bytes": peak_host,
            "baseline_host_memory_bytes": baseline_host,
            "peak_device_memory_bytes": peak_device,
            "nvml_device_memory_bytes": nvml_bytes,
        }

    def _time_fit(self, dataset: Any, request: ProbeRequest) -> dict[str, Any]:
        """Train with ``model.fit`` as ``autobatch.fit`` does (one iterator over an endless
        dataset, ``steps_per_epoch``): one untimed epoch (Keras traces its train function
        and a cached pipeline fills its cache: the subset is ``steps`` batches), then timed
        epochs of ``steps`` steps until they add up to ``min_time_s``."""
        model = self.model
        if bool(model.jit_compile) != bool(request.jit_compile):
            model.jit_compile = bool(request.jit_compile)
            model.train_function = None  # traced again with the new setting
        timer = epoch_timer(request.min_time_s)
        model.fit(dataset, epochs=1 + (MAX_STEPS_FACTOR if request.min_time_s else 1),
                  steps_per_epoch=request.steps, verbose=0, callbacks=[timer])
        per_step = [epoch_s / request.steps for epoch_s in timer.epochs_s]
        return summarize_steps(per_step, None, request.batch_size * self.num_replicas)

    def _time_loop(self, dataset: Any, request: ProbeRequest, fill_steps: int) -> dict[str, Any]:
        """Time each step of a bare loop over the worker's traced train step."""
        import tensorflow as tf

        local_spec = dataset.element_spec
        if self.strategy is not None:
            dataset = self.strategy.experimental_distribute_dataset(dataset)
        iterator = iter(dataset)
        # Decode the first batch in a thread while this one traces the step (tracing a large
        # model takes tens of seconds; both would otherwise run back to back). A cached probe
        # first reads its subset once there, which fills the cache: no training step is
        # needed for that, so the fill costs decoding only, and it overlaps the tracing.
        first: list[Any] = []
        fetch = threading.Thread(target=fetch_into, args=(iterator, first, fill_steps + 1),
                                 daemon=True)
        fetch.start()
        step = self.step_function(dataset.element_spec, request.jit_compile, local_spec)
        step.get_concrete_function()
        fetch.join()
        waits_s: list[float] = []
        steps_s: list[float] = []
        warmup_steps = request.warmup_steps
        most = warmup_steps + request.steps * (MAX_STEPS_FACTOR if request.min_time_s else 1)
        for index in range(most):
            if index >= warmup_steps + request.steps and sum(steps_s) >= request.min_time_s:
                break
            start = time.perf_counter()
            if index == 0:
                batch = first[0]
                if isinstance(batch, BaseException):
                    raise batch
            else:
                batch = next(iterator)
            fetched = time.perf_counter()
            logs = step(batch)
            # Reading the values waits for the step to finish (GPU kernels run asynchronously);
            # under a strategy, every replica's.
            for value in tf.nest.flatten(logs):
                for local in self._local_results(value):
                    local.numpy()
            done = time.perf_counter()
            if index >= warmup_steps:
                waits_s.append(fetched - start)
                steps_s.append(done - start)
        del iterator
        return summarize_steps(steps_s, waits_s, request.batch_size * self.num_replicas)

    def _local_results(self, value: Any) -> Any:
        if self.strategy is None:
            return (value,)
        return self.strategy.experimental_local_results(value)

