"""The probe worker: a long-lived child that imports TensorFlow and loads the model and the
data once, then serves probes.

Protocol (JSON lines): the parent runs this module with ``CONFIG.json``, isolated from its
current folder (``autobatch._isolated.python_command``) and with its own import path;
the worker answers ``{"event": "ready", ...}`` (or ``{"event": "error", ...}`` and exits),
then reads ``{"cmd": "probe", "request": {...}}`` lines from stdin and answers each with
``{"event": "result", "result": {...}}``. stdout carries nothing else: the worker moves fd 1
onto stderr (a log file the parent keeps) so that prints from TF or user code cannot corrupt
the protocol. EOF on stdin ends the worker.

Memory in one worker is not given back between probes: probe in ascending batch order.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import resource
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

logger = logging.getLogger("autobatch._probe._worker")


# ---------------------------------------------------------------- kernel memory figures


def read_status_bytes(field: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of ``/proc/PID/status`` (``VmHWM``, ``VmRSS``) in bytes."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the kernel (glibc ``malloc_trim``).

    A reused worker keeps the pages an earlier probe freed; without this they stay in its
    RSS, and a probe of a larger batch, unable to reuse them all, reads their sum: measured
    here with a small CNN, batch 128 read 1205 MB after smaller probes against 1040-1081 MB
    in a fresh worker. Returns False where there is no glibc.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if not _MALLOC_TRIM:
        return False
    _MALLOC_TRIM(0)
    return True


_MALLOC_TRIM: Any = None


def peak_rss_bytes() -> int:
    """``VmHWM`` since the last reset, or ``ru_maxrss`` (since start) where it is missing."""
    hwm = read_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _set_parent_death_signal() -> None:
    """Die with the parent (Linux), so an orphaned worker never keeps training."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------- the worker


class Worker:
    """Holds the model, the data source and the traced train step; runs probes.

    Also used in-process by ``InProcessProbeRunner``.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        import tensorflow as tf

        self.config = config
        self.device = "cpu"
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            try:
                # Memory growth: the allocator's peak then reflects what the probe needs,
                # not TF's default grab of the whole card.
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass  # already initialised (in-process runner)
        if gpus:
            self.device = "GPU:0"
        self.source = load_source(config["data"])
        self.model = load_model(config["model"], self.source)
        from autobatch._models import model_input_shape

        shape = model_input_shape(self.model) or ()
        self.image_size = config.get("image_size") or (
            (shape[0], shape[1]) if len(shape) == 3 and shape[0] and shape[1] else None)
        self.channels = config.get("channels") or (shape[-1] if len(shape) == 3 else None)
        self.seed = int(config.get("seed", 0))
        self.cache_dir = config.get("cache_dir")
        self._steps: dict[tuple[bool, str], Any] = {}
        self._built = False
        self.probes_served = 0

    def accepts_uint8(self) -> bool:
        """Whether uint8 batches can be built (8-bit images) and the model gives the same
        output for them as for float32 ones (``autobatch._models.model_accepts_uint8``)."""
        from autobatch._models import model_accepts_uint8
        from autobatch._pipeline import has_8bit_pixels

        return has_8bit_pixels(self.source) and model_accepts_uint8(
            self.model, self.image_size, self.channels)

    # ---- the train step, traced once per jit setting and input dtype, any batch size
    def step_function(self, element_spec: Any, jit_compile: bool) -> Any:
        import tensorflow as tf

        if not self._built:
            # Build model, loss, metrics and optimizer state outside the traced function,
            # as fit does, so tracing never creates variables.
            # Shapes and dtypes are all it reads, so the element spec stands in for a batch.
            self.model._symbolic_build(data_batch=element_spec)
            self._built = True
        key = (bool(jit_compile), str(element_spec[0].dtype.name))
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

    def _source_for(self, request: Any) -> tuple[Any, int, Any]:
        """The source a probe reads, the batches read untimed to fill its cache, the cache
        folder.

        A cache pays off from the second epoch on, which a probe of a few steps never
        reaches. So a cached probe reads a subset of the data just large enough for its
        timed steps, passes over it once untimed without training (filling the cache), and
        times the following passes: the steady state ``fit`` sees after its first epoch.
        """
        from autobatch._sources import ArraySource, FileSource

        if request.settings.cache == "none":
            return self.source, 0, self.cache_dir
        subset = min(self.source.num_examples or 0, request.batch_size * max(1, request.steps))
        if subset <= 0 or not isinstance(self.source, (FileSource, ArraySource)):
            return self.source, 0, self.cache_dir
        if isinstance(self.source, FileSource):
            source = FileSource(self.source.paths[:subset], self.source.labels[:subset],
                                self.source.class_names, self.source.root)
        else:
            y = None if self.source.y is None else self.source.y[:subset]
            source = ArraySource(self.source.x[:subset], y)
        fill_steps = -(-subset // request.batch_size)
        cache_dir = None
        if request.settings.cache == "disk":
            import tempfile

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
        from autobatch._probe._types import ProbeRequest, ProbeResult

        request = ProbeRequest.from_dict(request_data)
        self.probes_served += 1
        base = {"batch_size": request.batch_size, "settings": request.settings,
                "jit_compile": request.jit_compile, "mode": request.mode, "device": self.device,
                "worker_pid": os.getpid(), "worker_probe_number": self.probes_served}
        try:
            measured = self._run(request)
        except BaseException as exc:  # noqa: BLE001 - the whole point is to report it
            if isinstance(exc, KeyboardInterrupt):
                raise
            outcome = "oom" if _is_oom(exc) else "crash"
            lines = traceback.format_exception_only(type(exc), exc)
            text = "".join(lines).strip().splitlines()
            logger.error("probe failed: %s", "".join(traceback.format_exception(exc)))
            result = ProbeResult(outcome=outcome, error="\n".join(text[-8:]),
                                 peak_host_memory_bytes=peak_rss_bytes(), **base)
            return result.to_dict()
        return ProbeResult(outcome="ok", **base, **measured).to_dict()

    def _run(self, request: Any) -> dict[str, Any]:
        import tensorflow as tf

        from autobatch._pipeline import build_dataset

        gc.collect()
        release_free_heap()
        reset_peak_rss()
        baseline_host = read_status_bytes("VmRSS")
        gpu = self.device if self.device != "cpu" else None
        if gpu:
            try:
                tf.config.experimental.reset_memory_stats(gpu)
            except Exception:
                pass
        source, fill_steps, cache_dir = self._source_for(request)
        dataset = build_dataset(
            source, batch_size=request.batch_size, settings=request.settings,
            image_size=self.image_size, channels=self.channels, shuffle=True, seed=self.seed,
            cache_dir=cache_dir, repeat=True,
        )
        if request.mode == "fit":
            measured = self._time_fit(dataset, request)
        else:
            measured = self._time_loop(dataset, request, fill_steps)
        del dataset
        peak_host = peak_rss_bytes()
        peak_device = nvml_bytes = None
        if gpu:
            try:
                peak_device = int(tf.config.experimental.get_memory_info(gpu)["peak"])
            except Exception:
                peak_device = None
            nvml_bytes = nvml_process_memory_bytes(os.getpid())
        return measured | {
            "worker_trace_count": self.trace_count(),
            "peak_host_memory_bytes": peak_host,
            "baseline_host_memory_bytes": baseline_host,
            "peak_device_memory_bytes": peak_device,
            "nvml_device_memory_bytes": nvml_bytes,
        }

    def _time_fit(self, dataset: Any, request: Any) -> dict[str, Any]:
        """Train with ``model.fit`` as ``autobatch.fit`` does (one iterator over an endless
        dataset, ``steps_per_epoch``): one untimed epoch (Keras traces its train function
        and a cached pipeline fills its cache: the subset is ``steps`` batches), then timed
        epochs of ``steps`` steps until they add up to ``min_time_s``."""
        from autobatch._probe._types import MAX_STEPS_FACTOR

        model = self.model
        if bool(model.jit_compile) != bool(request.jit_compile):
            model.jit_compile = bool(request.jit_compile)
            model.train_function = None  # traced again with the new setting
        timer = _epoch_timer(request.min_time_s)
        model.fit(dataset, epochs=1 + (MAX_STEPS_FACTOR if request.min_time_s else 1),
                  steps_per_epoch=request.steps, verbose=0, callbacks=[timer])
        per_step = [epoch_s / request.steps for epoch_s in timer.epochs_s]
        return summarize_steps(per_step, None, request.batch_size)

    def _time_loop(self, dataset: Any, request: Any, fill_steps: int) -> dict[str, Any]:
        """Time each step of a bare loop over the worker's traced train step."""
        import tensorflow as tf

        from autobatch._probe._types import MAX_STEPS_FACTOR

        iterator = iter(dataset)
        # Decode the first batch in a thread while this one traces the step (tracing a large
        # model takes tens of seconds; both would otherwise run back to back). A cached probe
        # first reads its subset once there, which fills the cache: no training step is
        # needed for that, so the fill costs decoding only, and it overlaps the tracing.
        first: list[Any] = []
        fetch = threading.Thread(target=_fetch_into, args=(iterator, first, fill_steps + 1),
                                 daemon=True)
        fetch.start()
        step = self.step_function(dataset.element_spec, request.jit_compile)
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
            # Reading the values waits for the step to finish (GPU kernels run asynchronously).
            for value in tf.nest.flatten(logs):
                value.numpy()
            done = time.perf_counter()
            if index >= warmup_steps:
                waits_s.append(fetched - start)
                steps_s.append(done - start)
        del iterator
        return summarize_steps(steps_s, waits_s, request.batch_size)


def _epoch_timer(min_time_s: float) -> Any:
    """A Keras callback that times each epoch after the first and stops training once the
    timed epochs add up to ``min_time_s`` (one timed epoch at least)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs_s: list[float] = []
            self._started = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 0:
                return  # tracing, cache fill
            self.epochs_s.append(time.perf_counter() - self._started)
            if sum(self.epochs_s) >= min_time_s:
                self.model.stop_training = True

    return EpochTimer()


def _fetch_into(iterator: Any, out: list[Any], count: int = 1) -> None:
    """Pull ``count`` batches and keep the last (the ones before only fill a cache)."""
    try:
        batch = None
        for _ in range(max(1, count)):
            batch = next(iterator)
        out.append(batch)
    except BaseException as exc:  # noqa: BLE001 - re-raised in the probing thread
        out.append(exc)


def summarize_steps(steps_s: list[float], waits_s: list[float] | None,
                    batch_size: int) -> dict[str, Any]:
    """Median step time, its interquartile spread, examples/s and the input-wait share
    (None when the waits were not seen)."""
    import statistics

    if not steps_s:
        return {"step_times_s": []}
    median = statistics.median(steps_s)
    if len(steps_s) >= 4:
        quartiles = statistics.quantiles(steps_s, n=4)
        spread = quartiles[2] - quartiles[0]
    else:
        spread = max(steps_s) - min(steps_s)
    total = sum(steps_s)
    return {
        "step_time_s": median,
        "step_time_spread_s": spread,
        "step_times_s": [round(s, 6) for s in steps_s],
        "examples_per_s": batch_size / median if median > 0 else None,
        "input_wait_fraction": (sum(waits_s) / total) if waits_s is not None and total > 0
        else None,
    }


def nvml_process_memory_bytes(pid: int) -> int | None:
    """GPU memory NVML charges to ``pid`` (the cross-check of TF's allocator peak)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        total = 0
        found = False
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) or []:
                if int(proc.pid) == pid and proc.usedGpuMemory is not None:
                    total += int(proc.usedGpuMemory)
                    found = True
        return total if found else None
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import tensorflow as tf

        if isinstance(exc, tf.errors.ResourceExhaustedError):
            return True
    except ImportError:
        pass
    text = str(exc)
    return "ResourceExhausted" in text or "OOM when allocating" in text


# ---------------------------------------------------------------- loading model and data


def load_source(data: dict[str, Any]) -> Any:
    """Rebuild the data source the parent described (index file, .npy files, pickle)."""
    from autobatch._sources import ArraySource, FileSource, GeneratorSource

    kind = data["kind"]
    if kind == "directory":
        index = json.loads(Path(data["index_path"]).read_text())
        return FileSource(tuple(index["paths"]), tuple(index["labels"]),
                          tuple(index["class_names"]), index.get("root"))
    if kind == "arrays":
        import numpy as np

        x = np.load(data["x_path"], mmap_mode="r")
        y = np.load(data["y_path"], mmap_mode="r") if data.get("y_path") else None
        return ArraySource(x, y)
    if kind == "generator":
        import pickle

        with open(data["pickle_path"], "rb") as handle:
            generator = pickle.load(handle)
        return GeneratorSource(generator, data.get("num_examples_hint"), data.get("batched"))
    raise ValueError(f"unknown data kind {kind!r}")


def load_model(model: dict[str, Any], source: Any) -> Any:
    """Build or load the model the parent described: a built-in, a model-building function
    (imported and called here), or a ``.keras`` file after importing the modules that define
    its custom objects (``autobatch._models.save_model_for_worker`` recorded them)."""
    from autobatch._models import (
        build_model_from_function,
        import_custom_objects_for_worker,
        load_model_file,
        resolve_model,
    )

    if model.get("builtin"):
        return resolve_model(model["builtin"], num_classes=int(model["num_classes"]),
                             image_size=model["image_size"], channels=int(model["channels"]))
    if model.get("function"):
        return build_model_from_function(model["function"],
                                         compile_config=model.get("compile_config"))
    custom_objects = import_custom_objects_for_worker(model.get("modules"),
                                                      model.get("custom_objects"))
    return load_model_file(model["path"], custom_objects=custom_objects,
                           custom_objects_module=model.get("custom_objects_module"))


# ---------------------------------------------------------------- main loop


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _set_parent_death_signal()
    # Keep a private copy of stdout for the protocol; everything else printed goes to the log.
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def send(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message, default=str) + "\n")
        protocol.flush()

    config = json.loads(Path(argv[0]).read_text())
    started = time.perf_counter()
    try:
        import tensorflow as tf  # noqa: F401 - timed apart from the model load

        import_s = time.perf_counter() - started
        worker = Worker(config)
        # Asked once per runner (it keeps the first worker's answer in the config).
        accepts_uint8 = config["accepts_uint8"] if "accepts_uint8" in config else (
            worker.accepts_uint8())
    except Exception as exc:  # noqa: BLE001
        from autobatch._errors import DataError, ModelError

        kind = "model" if isinstance(exc, ModelError) else "data" if isinstance(
            exc, DataError) else "crash"
        logger.error("worker start failed: %s", "".join(traceback.format_exception(exc)))
        send({"event": "error", "kind": kind, "message": str(exc).strip().splitlines()[0]
              if str(exc).strip() else type(exc).__name__})
        return 1
    send({"event": "ready", "pid": os.getpid(), "device": worker.device,
          "import_s": import_s, "load_s": time.perf_counter() - started,
          "idle_rss_bytes": read_status_bytes("VmRSS"),
          "image_size": worker.image_size, "channels": worker.channels,
          "accepts_uint8": accepts_uint8})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        message = json.loads(line)
        if message.get("cmd") == "probe":
            send({"event": "result", "result": worker.probe(message["request"])})
        elif message.get("cmd") == "exit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
