"""``SubprocessProbeRunner``: probes in a reused, watched worker process (its life cycle:
start, probe, stop, restart). No TensorFlow in this process.

The worker (``autobatch._probe._main``) imports TF, loads model and data and traces the
train step once, and serves probes while it is healthy; after an ``oom``, ``timeout`` or
``crash`` the next probe starts a fresh one. A ``Watchdog`` stops it when its resident
memory crosses the host budget.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from autobatch._atomic import atomic_write_text
from autobatch._data import normalize_image_size
from autobatch._data._augment import augment_modules, describe_augment
from autobatch._errors import DataError, ModelError, ProbeError, UsageError
from autobatch._isolated import python_command
from autobatch._probe import _protocol as protocol
from autobatch._probe._base import ProbeRunner
from autobatch._probe._budgets import DEFAULT_SAFETY_FRACTION, default_budgets
from autobatch._probe._data_io import probe_source, write_data_description
from autobatch._probe._failures import lost_worker_result, timeout_result
from autobatch._probe._model_io import describe_model
from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._probe._watchdog import Watchdog
from autobatch._sizes import format_bytes

logger = logging.getLogger(__name__)

WORKER_MODULE = "autobatch._probe._main"
_LOG_TAIL_LINES = 12


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
        augment: the augmentation training applies after the cache (a function by its
            importable name, Keras layers by their config): the probes measure it.
        strategy: the ``autobatch._distribute.StrategySpec`` the worker probes under (its
            logical devices set up first, the model loaded in its scope); a probe's batch is
            then per replica. None: one device.
        data_service: ``grpc://HOST:PORT``: the probes' examples are made on that tf.data
            service (``autobatch._data._service``).
    """

    applies_levers = True

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
        augment: Any = None,
        strategy: Any = None,
        data_service: str | None = None,
    ) -> None:
        if not 0 < safety_fraction <= 1:
            raise UsageError(f"{{param}} must lie in (0, 1], got {safety_fraction}",
                             parameter="safety_fraction")
        self.source = probe_source(data)
        self._own_work_dir = work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="autobatch-probe-")) if work_dir is None \
            else Path(work_dir)
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: Watchdog | None = None
        self._reader: protocol.MessageReader | None = None
        self._log_path: Path | None = None
        self._largest_batch = 0
        self._strategy = strategy
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
            self.start_s = 0.0
            """Wall time spent starting workers (process, TF import, model and data load)."""
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

            described = describe_model(
                model, self.source, image_size=normalize_image_size(image_size),
                channels=channels, custom_objects_module=custom_objects_module,
                work_dir=self.work_dir)
            self.model_description = described.config
            augmented = describe_augment(augment)
            self.worker_modules = [*described.modules, *self.source.modules(),
                                   *augment_modules(augmented)]
            self.image_size, self.channels = described.image_size, described.channels
            self.data_description = write_data_description(self.source, self.work_dir)
            self.config_path = self.work_dir / "worker_config.json"
            atomic_write_text(self.config_path, json.dumps({
                "model": self.model_description,
                "data": self.data_description,
                "image_size": list(self.image_size) if self.image_size else None,
                "channels": self.channels,
                "seed": seed,
                "augment": augmented,
                "cache_dir": str(self.work_dir / "cache"),
                "strategy": strategy.to_dict() if strategy is not None else None,
                "data_service": data_service,
            }))
        except BaseException:
            # A model or data the worker cannot take: no temp folder is left behind.
            self.close()
            raise

    @property
    def worker_largest_batch(self) -> int:
        return self._largest_batch if self.is_alive() else 0

    @property
    def accepts_uint8(self) -> bool:
        """Asked by the worker at start-up (its ready message); a worker is started for it
        when none has been ready yet. False when none starts."""
        if self.last_ready is None:
            self.start()
        return bool((self.last_ready or {}).get("accepts_uint8", False))

    @property
    def num_replicas(self) -> int:
        """The worker's replicas (its ready message; a worker is started to ask)."""
        if self._strategy is None:
            return 1
        if self.last_ready is None:
            self.start()
        return int((self.last_ready or {}).get("num_replicas", 1) or 1)

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
        command = python_command(WORKER_MODULE, [str(self.config_path)],
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
        self._reader = protocol.MessageReader(self._process.stdout)
        self._watchdog = Watchdog(self._process, self.host_memory_budget_bytes)
        self._watchdog.start()
        logger.info("probe worker %d started (pid %d)", self.worker_starts, self._process.pid)
        launched = time.perf_counter()
        message, waited = self._reader.receive(self.startup_timeout_s)
        self.start_s += time.perf_counter() - launched
        if message is not None and protocol.is_event(message, protocol.READY):
            self._on_ready(message)
            return None
        if message is not None and protocol.is_event(message, protocol.ERROR):
            self._stop()
            text = message.get("message", "unknown error")
            if message.get("kind") == "model":
                raise ModelError(text)
            if message.get("kind") == "data":
                raise DataError(text)
            raise ProbeError(f"the probe worker failed to start: {text}")
        return self._failure(None, waited, starting=True)

    def time_spent(self) -> dict[str, Any]:
        """Where the workers' start-up time went: starts, their wall time, and the last
        start's TensorFlow import and model-and-data load (each start repeats them)."""
        ready = self.last_ready or {}
        return {"worker_starts": self.worker_starts, "worker_start_s": round(self.start_s, 2),
                "tensorflow_import_s": round(float(ready.get("import_s") or 0), 2),
                "model_load_s": round(float(ready.get("load_s") or 0)
                                      - float(ready.get("import_s") or 0), 2)}

    def _on_ready(self, message: dict[str, Any]) -> None:
        self.last_ready = message
        self.device = message.get("device", "cpu")
        if self.image_size is None and message.get("image_size"):
            # The worker's model told (a model-building function, a .keras file).
            height, width = message["image_size"]
            self.image_size = (int(height), int(width))
        if self.channels is None and message.get("channels"):
            self.channels = int(message["channels"])
        config = json.loads(self.config_path.read_text())
        if "accepts_uint8" not in config:
            # The model and data do not change between workers: later ones skip the check.
            config["accepts_uint8"] = bool(message.get("accepts_uint8", False))
            atomic_write_text(self.config_path, json.dumps(config))
        logger.info("probe worker ready in %.1f s (TF import %.1f s), idle RSS %s",
                    message.get("load_s", 0), message.get("import_s", 0),
                    format_bytes(message.get("idle_rss_bytes")))

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

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the worker (tests, and callers that must stop it at once)."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, sig)

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
        assert self._reader is not None
        self._largest_batch = max(self._largest_batch, request.batch_size)
        try:
            self._process.stdin.write(protocol.encode(protocol.probe_command(request)))
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child died; the reader sees EOF and we report why below
        message, waited = self._reader.receive(request.timeout_s)
        self.probes_run += 1
        if message is not None and protocol.is_event(message, protocol.RESULT):
            result = ProbeResult.from_dict(message["result"])
            result = self._judge_budget(result)
            if not result.ok:
                self._stop()  # its memory state is unknown: the next probe starts fresh
            return self._finish(result, request, start_s, started)
        return self._finish(self._failure(request, waited), request, start_s, started)

    def _failure(self, request: ProbeRequest | None, why: str,
                 starting: bool = False) -> ProbeResult:
        """Build the result of a probe that did not come back, and stop the worker."""
        watchdog = self._watchdog
        process = self._process
        pid = process.pid if process is not None else None
        if why == "timeout" and (watchdog is None or watchdog.over_budget_bytes is None):
            limit_s = self.startup_timeout_s if starting or request is None else request.timeout_s
            self._stop()
            return timeout_result(request, starting=starting, limit_s=limit_s,
                                  device=self.device, pid=pid)
        if process is not None:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        code = process.poll() if process is not None else None
        over = watchdog.over_budget_bytes if watchdog is not None else None
        peak = watchdog.peak_bytes if watchdog is not None else None
        self._stop()
        return lost_worker_result(
            request, exit_code=code, over_budget_bytes=over, peak_bytes=peak,
            host_budget_bytes=self.host_memory_budget_bytes, starting=starting,
            log_tail=self._log_tail() if over is None else "", device=self.device, pid=pid)

    def _finish(self, result: ProbeResult, request: ProbeRequest, start_s: float,
                started: bool) -> ProbeResult:
        return dataclasses.replace(
            result, batch_size=request.batch_size, settings=request.settings,
            jit_compile=request.jit_compile, mixed_precision=request.mixed_precision,
            remat=request.remat, memory_budget_bytes=self.memory_budget_bytes,
            host_memory_budget_bytes=self.host_memory_budget_bytes,
            wall_time_s=time.perf_counter() - start_s, worker_started=started)

    def _log_tail(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        lines = self._log_path.read_text(errors="replace").splitlines()
        useful = [ln for ln in lines if ln.strip()][-_LOG_TAIL_LINES:]
        return ("\n" + "\n".join(useful)) if useful else ""
