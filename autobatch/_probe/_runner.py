"""Parent side of the probes: runners that answer "does batch B train here, how fast, at what
peak memory?" without risking the caller's process. No TensorFlow import here.

``SubprocessProbeRunner`` keeps one worker process (TF imported, model and data loaded, train
step traced once) across probes while it is healthy, and restarts it after an ``oom``,
``timeout`` or ``crash``. A watchdog thread polls the child's kernel memory figures
(``VmRSS``/``VmHWM``) and stops it when it crosses the host budget.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from autobatch._errors import DataError, ModelError, ProbeError
from autobatch._isolated import python_command
from autobatch._probe._budgets import DEFAULT_SAFETY_FRACTION, default_budgets
from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._settings import PipelineSettings
from autobatch._sizes import format_bytes
from autobatch._sources import ArraySource, FileSource, GeneratorSource, resolve_source

logger = logging.getLogger(__name__)

WATCHDOG_INTERVAL_S = 0.025
_LOG_TAIL_LINES = 12


# ---------------------------------------------------------------- the contract


class ProbeRunner(abc.ABC):
    """Runs probes. The extension point the search talks to.

    Contract:
        * ``run`` never raises for a failing probe: an OOM, a timeout or a crash of the
          probed model is a ``ProbeResult`` with that ``outcome``. It raises ``ModelError`` /
          ``DataError`` only when the model or data cannot be loaded at all, and
          ``ProbeError`` when the probe machinery itself is broken.
        * Memory is not given back inside one worker process, so the peak of a probe counts
          every earlier probe of the same worker. A runner with workers tracks the largest
          batch its current worker ran (``worker_largest_batch``) and starts a fresh worker
          before a smaller batch whose request asks for its ``own_peak``; ``restart()``
          forces one.
        * Counters: ``worker_starts`` (worker processes started) and ``probes_run``.
        * Budgets: ``host_memory_budget_bytes``, ``device_memory_budget_bytes`` (None without
          a GPU) and ``memory_budget_bytes``, the one a probe's ``peak_memory_bytes`` is
          compared against (device on GPU, host otherwise).
    """

    worker_starts: int = 0
    probes_run: int = 0
    worker_largest_batch: int = 0
    """Largest batch the current worker ran (0: none yet, or no worker)."""
    host_memory_budget_bytes: int | None = None
    device_memory_budget_bytes: int | None = None
    device: str = "cpu"

    @property
    def memory_budget_bytes(self) -> int | None:
        if self.device != "cpu" and self.device_memory_budget_bytes is not None:
            return self.device_memory_budget_bytes
        return self.host_memory_budget_bytes

    @property
    def budget(self) -> dict[str, Any]:
        return {
            "host_memory_budget_bytes": self.host_memory_budget_bytes,
            "device_memory_budget_bytes": self.device_memory_budget_bytes,
            "memory_budget_bytes": self.memory_budget_bytes,
            "device": self.device,
        }

    @abc.abstractmethod
    def run(self, request: ProbeRequest) -> ProbeResult:
        """Run one probe and return what it measured."""

    @property
    def accepts_uint8(self) -> bool:
        """Whether the data are 8-bit images and the model gives the same output for them
        as uint8 as for float32 (see ``Worker.accepts_uint8``); False when unknown."""
        return False

    def restart(self) -> None:  # noqa: B027 - optional for runners without a process
        """Start the next probe in a fresh worker (needed before probing a smaller batch)."""

    def close(self) -> None:  # noqa: B027
        """Release the worker and temporary files."""

    def __enter__(self) -> ProbeRunner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _judge_budget(self, result: ProbeResult) -> ProbeResult:
        """An ``ok`` probe whose peak crossed the budget is an ``oom`` for the search."""
        import dataclasses

        result = dataclasses.replace(
            result,
            memory_budget_bytes=self.memory_budget_bytes,
            host_memory_budget_bytes=self.host_memory_budget_bytes,
        )
        if not result.ok:
            return result
        checks = [("host", result.peak_host_memory_bytes, self.host_memory_budget_bytes)]
        if result.device != "cpu":
            checks.append(("device", result.peak_device_memory_bytes,
                           self.device_memory_budget_bytes))
        for what, peak, budget in checks:
            if peak is not None and budget is not None and peak > budget:
                return dataclasses.replace(
                    result, outcome="oom",
                    error=f"peak {what} memory {format_bytes(peak)} is over the budget "
                          f"{format_bytes(budget)}")
        return result


# ---------------------------------------------------------------- describing the job


def _looks_like_keras_model(model: Any) -> bool:
    module = type(model).__module__ or ""
    return hasattr(model, "save") and hasattr(model, "fit") and (
        module.startswith("keras") or hasattr(model, "get_config"))


def _num_classes(source: Any) -> int | None:
    if isinstance(source, FileSource):
        return source.num_classes
    if isinstance(source, ArraySource) and source.y is not None:
        import numpy as np

        y = np.asarray(source.y)
        if y.ndim >= 2 and y.shape[-1] > 1:
            return int(y.shape[-1])
        if np.issubdtype(y.dtype, np.integer) and y.size:
            return int(y.max()) + 1
    return None


def write_data_description(source: Any, work_dir: Path) -> dict[str, Any]:
    """Write what the worker needs to rebuild ``source``: an index file for a folder, .npy
    files for arrays (memory-mapped by the worker), a pickle for a generator."""
    if isinstance(source, FileSource):
        index = work_dir / "data_index.json"
        _write_atomic(index, json.dumps({"paths": list(source.paths), "labels": list(source.labels),
                                         "class_names": list(source.class_names),
                                         "root": source.root}).encode())
        return {"kind": "directory", "index_path": str(index)}
    if isinstance(source, ArraySource):
        import numpy as np

        x_path = work_dir / "x.npy"
        np.save(x_path, np.asarray(source.x))
        description: dict[str, Any] = {"kind": "arrays", "x_path": str(x_path), "y_path": None}
        if source.y is not None:
            y_path = work_dir / "y.npy"
            np.save(y_path, np.asarray(source.y))
            description["y_path"] = str(y_path)
        return description
    if isinstance(source, GeneratorSource):
        path = work_dir / "generator.pkl"
        try:
            import pickle

            payload = pickle.dumps(source.generator)
        except Exception:
            try:
                import cloudpickle

                payload = cloudpickle.dumps(source.generator)
            except Exception as exc:
                raise DataError(
                    f"the generator cannot be sent to the probe worker ({exc}); define it at "
                    "module level in an importable module"
                ) from exc
        _write_atomic(path, payload)
        return {"kind": "generator", "pickle_path": str(path),
                "num_examples_hint": source.num_examples_hint, "batched": source.batched}
    raise DataError(f"unknown data source {type(source).__name__}")


def _write_atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the subprocess runner


class SubprocessProbeRunner(ProbeRunner):
    """Probes in a reused child process, with the host budget enforced by a watchdog.

    Args:
        model: a compiled ``keras.Model`` (saved to a ``.keras`` file for the worker, which
            imports the modules that define its custom objects first), a path to a
            ``.keras`` file, a model-building function (``"module:function"`` or a
            module-level callable, called in the worker) or a built-in name (built inside the
            worker, so the parent never imports TensorFlow).
        data: anything ``resolve_source`` takes.
        image_size: ``N`` or ``(height, width)``; by default the model's input size.
        channels: by default the model's input channels (3 for built-ins).
        host_memory_budget_bytes: the child is stopped (``oom``) when its resident memory
            crosses this; default: host headroom x ``safety_fraction``.
        device_memory_budget_bytes: GPU peak allowed; default: free memory x
            ``safety_fraction``.
        safety_fraction: share of the measured headroom used as the default budgets.
        custom_objects_module: importable module that registers the model's custom objects.
        work_dir: folder for the model file, data index and worker logs (a temp folder,
            removed on ``close`` and when this constructor fails, when None).
        worker_env: extra environment variables for the worker (``CUDA_VISIBLE_DEVICES``...).
        startup_timeout_s: wall limit for starting the worker (TF import, model load).
        fresh_worker_for_smaller_batch: the default of ``ProbeRequest.own_peak``: restart
            the worker by itself when a probe asks for a smaller batch than an earlier probe
            of the same worker, so its memory reading is not inflated by the earlier probe.
        seed: shuffle seed of the probe pipelines.
    """

    def __init__(
        self,
        model: Any,
        data: Any,
        *,
        image_size: int | tuple[int, int] | None = None,
        channels: int | None = None,
        host_memory_budget_bytes: int | None = None,
        device_memory_budget_bytes: int | None = None,
        safety_fraction: float = DEFAULT_SAFETY_FRACTION,
        custom_objects_module: str | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        worker_env: dict[str, str] | None = None,
        startup_timeout_s: float = 600.0,
        fresh_worker_for_smaller_batch: bool = True,
        seed: int = 0,
    ) -> None:
        if not 0 < safety_fraction <= 1:
            raise ProbeError(f"safety_fraction must lie in (0, 1], got {safety_fraction}")
        self.source = resolve_source(data)
        self._own_work_dir = work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="autobatch-probe-")) if work_dir is None \
            else Path(work_dir)
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: _Watchdog | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log_path: Path | None = None
        self._largest_batch = 0
        self.worker_modules: list[str] = []
        """Modules the worker imports for the model: their folders join its import path."""
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.worker_env = dict(worker_env or {})
            self.startup_timeout_s = float(startup_timeout_s)
            self.fresh_worker_for_smaller_batch = fresh_worker_for_smaller_batch
            self.custom_objects_module = custom_objects_module
            self.worker_starts = 0
            self.probes_run = 0
            self.last_ready: dict[str, Any] | None = None
            """The worker's ready message: pid, device, import_s, load_s, idle_rss_bytes."""

            if host_memory_budget_bytes is None or device_memory_budget_bytes is None:
                host_default, device_default = default_budgets(safety_fraction)
                if host_memory_budget_bytes is None:
                    host_memory_budget_bytes = host_default
                if device_memory_budget_bytes is None:
                    device_memory_budget_bytes = device_default
                self.device = "GPU:0" if device_default is not None else "cpu"
            self.host_memory_budget_bytes = int(host_memory_budget_bytes)
            self.device_memory_budget_bytes = (None if device_memory_budget_bytes is None
                                               else int(device_memory_budget_bytes))

            from autobatch._pipeline import normalize_image_size

            self.image_size = normalize_image_size(image_size)
            self.channels = channels
            self.model_description = self._describe_model(model)
            self.data_description = write_data_description(self.source, self.work_dir)
            self.config_path = self.work_dir / "worker_config.json"
            _write_atomic(self.config_path, json.dumps({
                "model": self.model_description,
                "data": self.data_description,
                "image_size": list(self.image_size) if self.image_size else None,
                "channels": self.channels,
                "seed": seed,
                "cache_dir": str(self.work_dir / "cache"),
            }).encode())
        except BaseException:
            # A model or data the worker cannot take: no temp folder is left behind.
            self.close()
            raise

    @property
    def worker_largest_batch(self) -> int:  # type: ignore[override]
        return self._largest_batch if self.is_alive() else 0

    # ---- describing the model for the worker
    def _describe_model(self, model: Any) -> dict[str, Any]:
        from autobatch._models import BUILTIN_MODELS, is_builtin, model_function_spec

        if is_builtin(model):
            if self.image_size is None:
                raise ModelError(f"built-in model {model!r} needs an image size; pass "
                                 "image_size / --image-size")
            num_classes = _num_classes(self.source)
            if num_classes is None:
                raise ModelError(f"cannot tell how many classes {model!r} needs from this data; "
                                 "pass a compiled keras.Model instead")
            if self.channels is None:
                self.channels = 3
            return {"builtin": model, "num_classes": num_classes,
                    "image_size": list(self.image_size), "channels": self.channels}
        # A model-building function ("module:function" or a callable), or a model one built
        # (resolve_model tags it): the worker calls the function itself.
        function = model_function_spec(model) or getattr(model, "_autobatch_model_function",
                                                         None)
        if isinstance(function, str):
            self.worker_modules = [function.partition(":")[0]]
            return {"function": function}
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if path.suffix != ".keras":
                raise ModelError(f"model SPEC {str(model)!r} is neither a .keras file, a "
                                 "model-building function (module:function) nor a built-in; "
                                 f"use one of {', '.join(BUILTIN_MODELS)}")
            if not path.is_file():
                raise ModelError(f"model file {str(model)!r} does not exist; check the path")
            if self.custom_objects_module:
                self.worker_modules = [self.custom_objects_module]
            return {"path": str(path.resolve()),
                    "custom_objects_module": self.custom_objects_module}
        if _looks_like_keras_model(model):
            from autobatch._models import model_input_shape, save_model_for_worker

            shape = model_input_shape(model)
            if shape is None:
                # A subclassed model not built yet: it is built on the data in the worker.
                self._geometry_from_data()
            else:
                if self.image_size is None and len(shape) == 3 and shape[0] and shape[1]:
                    self.image_size = (int(shape[0]), int(shape[1]))
                if self.channels is None and len(shape) == 3 and shape[-1]:
                    self.channels = int(shape[-1])
            try:
                path, imports = save_model_for_worker(model, self.work_dir / "model.keras",
                                                      self.custom_objects_module)
            except ModelError:
                from autobatch._models import rebuildable_class_spec

                # Keras cannot revive it (a subclassed model whose __init__ takes nothing),
                # but its class builds it: the worker calls the class, compiled as here.
                spec = rebuildable_class_spec(model) if model.compiled else None
                if spec is None:
                    raise
                logger.info("model %s is rebuilt in the worker by calling %s()",
                            getattr(model, "name", "?"), spec)
                self.worker_modules = [spec.partition(":")[0]]
                return {"function": spec, "compile_config": model.get_compile_config()}
            self.worker_modules = list(imports["modules"])
            return {"path": str(path), "custom_objects_module": self.custom_objects_module,
                    **imports}
        raise ModelError(f"cannot probe a model of type {type(model).__name__}: pass a compiled "
                         "keras.Model, a .keras path, a model-building function or one of "
                         f"{', '.join(BUILTIN_MODELS)}")

    def _geometry_from_data(self) -> None:
        """Image size and channels of a model that declares no input shape yet: the images'
        own size when they all share it (the audit measured them)."""
        if self.image_size is not None or not isinstance(self.source, FileSource):
            return
        sizes = getattr(self.source.audit, "image_sizes", None) or {}
        width, height = sizes.get("width") or {}, sizes.get("height") or {}
        if width and height and width.get("min") == width.get("max") and \
                height.get("min") == height.get("max"):
            self.image_size = (int(height["min"]), int(width["min"]))
            return
        raise ModelError(
            "the model declares no input shape yet (a subclassed model not built) and the "
            "images differ in size; pass image_size=N (--image-size N) or build the model "
            "first: model.build((None, H, W, C))")

    # ---- worker life cycle
    @property
    def worker_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ProbeResult | None:
        """Start the worker now (else the next ``run`` does). Returns None when it is ready,
        or the failed-probe result (``oom`` over budget at start-up, ``crash``...).

        Raises:
            ModelError, DataError: the worker cannot load the model or the data.
        """
        if self.is_alive():
            return None
        self._stop()
        self.worker_starts += 1
        self._log_path = self.work_dir / f"worker-{self.worker_starts}.log"
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.update(self.worker_env)
        # Isolated: the current folder is never on the worker's import path (a numpy.py there
        # would run in it); the caller's own path is, so whatever the caller imports (custom
        # objects, a model-building function, test helpers), the worker can.
        command = python_command("autobatch._probe._worker", [str(self.config_path)],
                                 extra_modules=self.worker_modules)
        log = open(self._log_path, "wb")
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
            )
        except OSError as exc:
            raise ProbeError(f"cannot start the probe worker: {exc}") from exc
        finally:
            log.close()
        self._largest_batch = 0
        self._lines = queue.Queue()
        threading.Thread(target=_pump_lines, args=(self._process.stdout, self._lines),
                         daemon=True, name="autobatch-probe-reader").start()
        self._watchdog = _Watchdog(self._process, self.host_memory_budget_bytes)
        self._watchdog.start()
        logger.info("probe worker %d started (pid %d)", self.worker_starts, self._process.pid)
        message, waited = self._receive(self.startup_timeout_s)
        if message is not None and message.get("event") == "ready":
            self.last_ready = message
            self.device = message.get("device", "cpu")
            if self.image_size is None and message.get("image_size"):
                # The worker's model told (a model-building function, a .keras file).
                self.image_size = tuple(int(v) for v in message["image_size"])  # type: ignore[assignment]
            if self.channels is None and message.get("channels"):
                self.channels = int(message["channels"])
            config = json.loads(self.config_path.read_text())
            if "accepts_uint8" not in config:
                # The model and data do not change between workers: later ones skip the check.
                config["accepts_uint8"] = bool(message.get("accepts_uint8", False))
                _write_atomic(self.config_path, json.dumps(config).encode())
            logger.info("probe worker ready in %.1f s (TF import %.1f s), idle RSS %s",
                        message.get("load_s", 0), message.get("import_s", 0),
                        format_bytes(message.get("idle_rss_bytes")))
            return None
        if message is not None and message.get("event") == "error":
            self._stop()
            text = message.get("message", "unknown error")
            if message.get("kind") == "model":
                raise ModelError(text)
            if message.get("kind") == "data":
                raise DataError(text)
            raise ProbeError(f"the probe worker failed to start: {text}")
        return self._failure(None, waited, starting=True)

    @property
    def accepts_uint8(self) -> bool:
        """Asked by the worker at start-up (its ready message); a worker is started for it
        when none has been ready yet. False when none starts."""
        if self.last_ready is None:
            self.start()
        return bool((self.last_ready or {}).get("accepts_uint8", False))

    def restart(self) -> None:
        self._stop()

    def close(self) -> None:
        self._stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __del__(self) -> None:  # best effort: never leave a worker behind
        try:
            self._stop()
        except Exception:
            pass

    def _stop(self) -> None:
        process, self._process = self._process, None
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if process is None:
            return
        if process.poll() is None:
            try:
                if process.stdin:
                    process.stdin.close()  # polite: EOF ends the worker's loop
                process.wait(timeout=2)
            except Exception:
                pass
        if process.poll() is None:
            process.kill()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                logger.warning("probe worker %d did not exit after SIGKILL", process.pid)
        for stream in (process.stdin, process.stdout):
            try:
                if stream:
                    stream.close()
            except Exception:
                pass

    # ---- probes
    def run(self, request: ProbeRequest) -> ProbeResult:
        """Run one probe in the worker; never raises for the probe's failure."""
        start_s = time.perf_counter()
        own_peak = (self.fresh_worker_for_smaller_batch if request.own_peak is None
                    else request.own_peak)
        if self.is_alive() and own_peak and request.batch_size < self._largest_batch:
            logger.info("batch %d < %d probed in this worker: fresh worker for a true peak",
                        request.batch_size, self._largest_batch)
            self._stop()
        started = not self.is_alive()
        if started:
            failed = self.start()
            if failed is not None:
                self.probes_run += 1
                return self._finish(failed, request, start_s, started)
        assert self._process is not None and self._process.stdin is not None
        self._largest_batch = max(self._largest_batch, request.batch_size)
        try:
            self._process.stdin.write(
                (json.dumps({"cmd": "probe", "request": request.to_dict()}) + "\n").encode())
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child died; the reader sees EOF and we report why below
        message, waited = self._receive(request.timeout_s)
        self.probes_run += 1
        if message is not None and message.get("event") == "result":
            result = ProbeResult.from_dict(message["result"])
            result = self._judge_budget(result)
            if not result.ok:
                self._stop()  # its memory state is unknown: the next probe starts fresh
            return self._finish(result, request, start_s, started)
        return self._finish(self._failure(request, waited), request, start_s, started)

    def _receive(self, timeout_s: float) -> tuple[dict[str, Any] | None, str]:
        """The next protocol message, or (None, why): "timeout" or "eof"."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "timeout"
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                return None, "eof"
            try:
                return json.loads(line), "message"
            except json.JSONDecodeError:
                logger.debug("worker said: %s", line.rstrip())

    def _failure(self, request: ProbeRequest | None, why: str,
                 starting: bool = False) -> ProbeResult:
        """Build the result of a probe that did not come back, and stop the worker."""
        watchdog = self._watchdog
        process = self._process
        pid = process.pid if process is not None else None
        if why == "timeout" and (watchdog is None or watchdog.over_budget_bytes is None):
            limit_s = self.startup_timeout_s if starting or request is None else request.timeout_s
            self._stop()
            outcome, error = "timeout", (
                f"the worker {'did not start' if starting else 'probe did not finish'} within "
                f"{limit_s:g} s and was stopped")
        else:
            if process is not None:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            code = process.poll() if process is not None else None
            over = watchdog.over_budget_bytes if watchdog is not None else None
            peak = watchdog.peak_bytes if watchdog is not None else None
            self._stop()
            if over is not None:
                outcome = "oom"
                error = (f"the worker's resident memory reached {format_bytes(over)}, over the "
                         f"host budget {format_bytes(self.host_memory_budget_bytes)}; stopped")
                if starting:
                    error += (" while loading TensorFlow and the model: the budget is below the "
                              "worker's idle footprint; raise --memory-budget")
            else:
                outcome = "crash"
                error = _describe_exit(code) + self._log_tail()
            return ProbeResult(
                outcome=outcome, batch_size=request.batch_size if request else 0,
                settings=request.settings if request else PipelineSettings(),
                jit_compile=request.jit_compile if request else False, error=error,
                peak_host_memory_bytes=peak, device=self.device, worker_pid=pid)
        return ProbeResult(
            outcome=outcome, batch_size=request.batch_size if request else 0,
            settings=request.settings if request else PipelineSettings(),
            jit_compile=request.jit_compile if request else False, error=error,
            device=self.device, worker_pid=pid)

    def _finish(self, result: ProbeResult, request: ProbeRequest, start_s: float,
                started: bool) -> ProbeResult:
        import dataclasses

        return dataclasses.replace(
            result, batch_size=request.batch_size, settings=request.settings,
            jit_compile=request.jit_compile,
            memory_budget_bytes=self.memory_budget_bytes,
            host_memory_budget_bytes=self.host_memory_budget_bytes,
            wall_time_s=time.perf_counter() - start_s, worker_started=started)

    def _log_tail(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        lines = self._log_path.read_text(errors="replace").splitlines()
        useful = [ln for ln in lines if ln.strip()][-_LOG_TAIL_LINES:]
        return ("\n" + "\n".join(useful)) if useful else ""

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the worker (tests, and callers that must stop it at once)."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, sig)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker was killed by {name}"
    return f"the worker exited with code {code}"


def _pump_lines(stream: IO[bytes] | None, lines: queue.Queue[str | None]) -> None:
    if stream is None:
        lines.put(None)
        return
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        pass
    lines.put(None)


class _Watchdog:
    """Polls the child's ``VmRSS`` and ``VmHWM`` and kills it when either crosses the budget.

    ``VmHWM`` (the kernel's high-water mark) catches a spike that rose and fell between two
    polls, so the budget holds even for allocations shorter than the poll interval.
    """

    def __init__(self, process: subprocess.Popen[bytes], budget_bytes: int | None,
                 interval_s: float = WATCHDOG_INTERVAL_S,
                 read: Callable[[str, int], int | None] | None = None) -> None:
        from autobatch._probe._worker import read_status_bytes

        self.process = process
        self.budget_bytes = budget_bytes
        self.interval_s = interval_s
        self.read = read or read_status_bytes
        self.peak_bytes: int | None = None
        self.over_budget_bytes: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="autobatch-probe-watchdog")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        pid = self.process.pid
        while not self._stop.is_set() and self.process.poll() is None:
            figures = [self.read(field, pid) for field in ("VmRSS", "VmHWM")]
            current = max((f for f in figures if f is not None), default=None)
            if current is not None:
                self.peak_bytes = max(self.peak_bytes or 0, current)
                if self.budget_bytes is not None and current > self.budget_bytes:
                    self.over_budget_bytes = current
                    try:
                        self.process.send_signal(signal.SIGKILL)
                    except OSError:
                        pass
                    logger.info("probe worker %d at %s, over the budget %s: killed", pid,
                                format_bytes(current), format_bytes(self.budget_bytes))
                    return
            self._stop.wait(self.interval_s)
