"""Several devices on one machine: the ``tf.distribute`` strategy a tune, a fit or a
pipeline works under, as plain data that travels to the probe worker (``StrategySpec``).

``strategy=`` takes ``None``/``"none"`` (one device), ``"mirrored"`` (every visible GPU; on a
machine without one, every logical CPU), ``"auto"`` (mirrored where more than one such
device is visible), or a ``tf.distribute.MirroredStrategy`` object; with none given, the
strategy a ``keras.Model`` was built under. Logical devices exist only if they are set
before TensorFlow starts, so the spec also carries this process's logical-device set-up
(``logical_cpus``, ``logical_gpus``), which the worker applies first thing. No TensorFlow at
import; nothing here imports it unless the caller already has.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

from autobatch._errors import UsageError

STRATEGY_CHOICES = ("none", "mirrored", "auto")
MWMS_REFUSAL = (
    "Keras 3 model.fit under MultiWorkerMirroredStrategy is broken since TensorFlow 2.16 "
    "(keras-team/keras#20585): train each worker with plan.dataset(data, input_context=...) "
    "in a custom training loop, or use MirroredStrategy on one machine")


@dataclass(frozen=True)
class StrategySpec:
    """A strategy as the worker rebuilds it.

    Attributes:
        kind: ``"mirrored"`` (the only multi-device kind ``fit`` supports here).
        devices: the replicas' devices (``"/gpu:0"``, ``"/cpu:1"``); None: every visible
            GPU, else every logical CPU, as the worker finds them.
        logical_cpus: split the CPU into this many logical devices before TensorFlow starts.
        logical_gpus: per physical GPU index, the memory limits (MiB) of its logical devices.
    """

    kind: str = "mirrored"
    devices: tuple[str, ...] | None = None
    logical_cpus: int | None = None
    logical_gpus: dict[int, tuple[int | None, ...]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "devices": list(self.devices) if self.devices else None,
                "logical_cpus": self.logical_cpus,
                "logical_gpus": {str(k): list(v) for k, v in self.logical_gpus.items()}
                if self.logical_gpus else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> StrategySpec | None:
        if not data:
            return None
        gpus = data.get("logical_gpus")
        return cls(kind=str(data.get("kind", "mirrored")),
                   devices=tuple(data["devices"]) if data.get("devices") else None,
                   logical_cpus=int(data["logical_cpus"]) if data.get("logical_cpus")
                   else None,
                   logical_gpus={int(k): tuple(v) for k, v in gpus.items()} if gpus else None)

    def key(self) -> dict[str, Any]:
        """What the plan cache and the study are keyed on (the replicas' devices)."""
        return {"kind": self.kind, "devices": list(self.devices) if self.devices else None,
                "logical_cpus": self.logical_cpus}


def _short_device(name: str) -> str:
    """``/job:localhost/replica:0/task:0/device:CPU:1`` -> ``/cpu:1``."""
    match = re.search(r"device:([A-Za-z_]+):(\d+)$", name) or re.search(
        r"/([A-Za-z_]+):(\d+)$", name)
    return f"/{match.group(1).lower()}:{match.group(2)}" if match else name


def _default_strategy(strategy: Any) -> bool:
    return strategy is None or type(strategy).__name__.startswith("_Default")


def model_strategy(model: Any) -> Any:
    """The ``tf.distribute`` strategy a ``keras.Model`` was built under, or None."""
    if "tensorflow" not in sys.modules or isinstance(model, str) or not hasattr(model, "fit"):
        return None
    strategy = getattr(model, "distribute_strategy", None)
    return None if _default_strategy(strategy) else strategy


def refuse_unsupported(strategy: Any) -> None:
    """One line for a strategy this tool cannot probe or train under."""
    name = type(strategy).__name__
    import tensorflow as tf  # a strategy object exists: TensorFlow is imported already

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise UsageError(MWMS_REFUSAL)
    if name not in ("MirroredStrategy", "OneDeviceStrategy"):
        raise UsageError(
            f"strategy {name} is not supported: pass strategy='mirrored' (or a "
            "tf.distribute.MirroredStrategy) for several devices on one machine, or none")


def _logical_setup() -> tuple[int | None, dict[int, tuple[int | None, ...]] | None]:
    """This process's logical-device set-up, when TensorFlow is already imported here."""
    if "tensorflow" not in sys.modules:
        return None, None
    import tensorflow as tf

    cpus = None
    physical_cpu = tf.config.list_physical_devices("CPU")
    if physical_cpu:
        logical = tf.config.get_logical_device_configuration(physical_cpu[0])
        if logical and len(logical) > 1:
            cpus = len(logical)
    gpus: dict[int, tuple[int | None, ...]] = {}
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        logical = tf.config.get_logical_device_configuration(gpu)
        if logical:
            gpus[index] = tuple(c.memory_limit for c in logical)
    return cpus, gpus or None


def resolve_strategy(strategy: Any, model: Any = None, *,
                     logical_cpus: int | None = None) -> StrategySpec | None:
    """The strategy to work under as a ``StrategySpec`` (None: one device).

    Args:
        strategy: ``None``, ``"none"``, ``"mirrored"``, ``"auto"`` or a strategy object.
        model: a ``keras.Model`` whose own strategy is used when ``strategy`` is None, and
            which must have been built under the strategy given.
        logical_cpus: split the CPU into this many logical devices (``--logical-cpus``;
            rehearsing data parallelism on a machine without GPUs, as Keras' own tests do).

    Raises:
        UsageError: an unknown choice, an unsupported strategy (MultiWorkerMirroredStrategy:
            keras-team/keras#20585), or a model built under another strategy.
    """
    built_under = model_strategy(model)
    if logical_cpus is not None and (isinstance(logical_cpus, bool) or int(logical_cpus) < 1):
        raise UsageError(f"{{param}} must be >= 1, got {logical_cpus}",
                         parameter="logical_cpus")
    if strategy is None:
        strategy = built_under if built_under is not None else "none"
    if isinstance(strategy, str):
        choice = strategy.strip().lower()
        if choice not in STRATEGY_CHOICES:
            raise UsageError(f"{{param}} must be one of {', '.join(STRATEGY_CHOICES)} or a "
                             f"tf.distribute.MirroredStrategy, got {strategy!r}",
                             parameter="strategy")
        if built_under is not None and choice == "none":
            refuse_unsupported(built_under)
            return describe_strategy(built_under)
        if choice == "none":
            return None
        cpus, gpus = _logical_setup()
        spec = StrategySpec(logical_cpus=logical_cpus or cpus, logical_gpus=gpus)
        if choice == "auto" and visible_replicas(spec) < 2:
            return None
        if built_under is not None:
            if visible_replicas(spec) != int(built_under.num_replicas_in_sync):
                raise UsageError(
                    f"the model was built under {type(built_under).__name__} on "
                    f"{built_under.num_replicas_in_sync} replicas but strategy={strategy!r} "
                    "asks for another set-up; leave strategy= out to use the model's own")
            refuse_unsupported(built_under)
            return describe_strategy(built_under)  # the same set-up: the model's devices
        return spec
    refuse_unsupported(strategy)
    if built_under is not None and built_under is not strategy:
        raise UsageError(
            "the model was built under another strategy than strategy=; build and compile "
            "it inside `with strategy.scope():` of the strategy you pass")
    return describe_strategy(strategy)


def describe_strategy(strategy: Any) -> StrategySpec | None:
    """A strategy object as a ``StrategySpec`` (None for one device)."""
    if _default_strategy(strategy) or type(strategy).__name__ == "OneDeviceStrategy":
        return None
    cpus, gpus = _logical_setup()
    devices = tuple(_short_device(d) for d in strategy.extended.worker_devices)
    return StrategySpec(devices=devices, logical_cpus=cpus, logical_gpus=gpus)


def visible_replicas(spec: StrategySpec | None) -> int:
    """The replicas ``spec`` trains on, as far as this process can tell without starting
    TensorFlow: its devices, else the logical CPUs, else the visible GPUs (NVML)."""
    if spec is None:
        return 1
    if spec.devices:
        return len(spec.devices)
    if spec.logical_gpus:
        return sum(len(v) for v in spec.logical_gpus.values())
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return len(gpus)
    else:
        from autobatch._env import environment

        gpus_seen = len(environment().gpus)
        if gpus_seen:
            return gpus_seen
    return spec.logical_cpus or 1


def apply_device_setup(spec: StrategySpec | None) -> None:
    """Worker side, before TensorFlow initialises its devices: the parent's logical devices
    (a CPU split in two, a GPU split by memory limits)."""
    if spec is None or (not spec.logical_cpus and not spec.logical_gpus):
        return
    import tensorflow as tf

    if spec.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(spec.logical_cpus))
    physical = tf.config.list_physical_devices("GPU")
    for index, limits in (spec.logical_gpus or {}).items():
        if index < len(physical):
            tf.config.set_logical_device_configuration(
                physical[index],
                [tf.config.LogicalDeviceConfiguration(memory_limit=m) for m in limits])


def build_strategy(spec: StrategySpec | None) -> Any:
    """Worker side: the ``tf.distribute.MirroredStrategy`` of ``spec`` (None: none)."""
    if spec is None:
        return None
    import tensorflow as tf

    devices = list(spec.devices) if spec.devices else None
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def strategy_devices(strategy: Any) -> list[str]:
    """The devices of a strategy's replicas (short names); ``[]`` for none."""
    if _default_strategy(strategy):
        return []
    return [_short_device(d) for d in strategy.extended.worker_devices]
