"""The tunable input-pipeline settings: concrete numbers, never AUTOTUNE."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

CacheMode = Literal["none", "memory", "disk"]
CACHE_MODES: tuple[str, ...] = ("none", "memory", "disk")
PixelType = Literal["float32", "uint8"]
PIXEL_TYPES: tuple[str, ...] = ("float32", "uint8")
AUTOTUNE = -1
"""Only for measuring the untuned default (Keras' own AUTOTUNE); a Plan never holds it."""


@dataclass(frozen=True)
class PipelineSettings:
    """How the tf.data pipeline is built. Every field is a concrete value.

    Attributes:
        num_parallel_calls: parallel decode/resize calls in ``Dataset.map``.
        prefetch: batches prefetched ahead of the model (0 = no prefetch).
        cache: ``"none"``, ``"memory"`` (decoded, resized examples kept in RAM) or
            ``"disk"`` (kept in a cache file).
        private_threadpool_size: threads of the pipeline's private pool (0 = TF's shared pool).
        deterministic: keep element order under parallel map.
        max_intra_op_parallelism: threads one tf.data op may use (1 is TF's own default).
        shuffle_buffer: 0 means a full shuffle of the file list every epoch (cheap: it
            shuffles file names, not pixels).
        arrays_in_memory: for in-memory arrays, one constant tensor (True) or slices
            streamed from the array (False) when a copy would not fit the host budget.
        pixels: the dtype images travel in through cache, shuffle, batch and prefetch.
            ``"float32"`` (0..255, as Keras' loaders give them) or ``"uint8"`` (resized
            images rounded to whole levels, a quarter of the bytes to copy and cache; the
            model's input layer casts them). Only for 8-bit images and a model that gives
            the same output for both; ``tune`` checks both.
    """

    num_parallel_calls: int = 2
    prefetch: int = 2
    cache: CacheMode = "none"
    private_threadpool_size: int = 0
    deterministic: bool = False
    max_intra_op_parallelism: int = 1
    shuffle_buffer: int = 0
    arrays_in_memory: bool = True
    pixels: PixelType = "float32"

    def __post_init__(self) -> None:
        from autobatch._errors import UsageError

        if self.num_parallel_calls < 1 and self.num_parallel_calls != AUTOTUNE:
            raise UsageError(f"num_parallel_calls must be >= 1, got {self.num_parallel_calls}")
        if self.prefetch < 0 and self.prefetch != AUTOTUNE:
            raise UsageError(f"prefetch must be >= 0, got {self.prefetch}")
        if self.cache not in CACHE_MODES:
            raise UsageError(f"cache must be one of {', '.join(CACHE_MODES)}; got {self.cache!r}")
        if self.pixels not in PIXEL_TYPES:
            raise UsageError(
                f"pixels must be one of {', '.join(PIXEL_TYPES)}; got {self.pixels!r}")
        if self.private_threadpool_size < 0 or self.max_intra_op_parallelism < 1:
            raise UsageError(
                "private_threadpool_size must be >= 0 and max_intra_op_parallelism >= 1")

    @classmethod
    def keras_default(cls) -> PipelineSettings:
        """What users get untuned: map and prefetch with AUTOTUNE (the baseline we beat)."""
        return cls(num_parallel_calls=AUTOTUNE, prefetch=AUTOTUNE, deterministic=True)

    @property
    def uses_autotune(self) -> bool:
        return AUTOTUNE in (self.num_parallel_calls, self.prefetch)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> PipelineSettings:
        return dataclasses.replace(self, **changes)


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PipelineSettings))
"""The pipeline settings by name, in their order: what the study tunes, the plan records and
the report and CLI show."""


def check_pixels_request(requested: str, *, eight_bit: bool) -> None:
    """``pixels="uint8"`` asked for data that are not 8-bit images: refused up front."""
    from autobatch._errors import DataError

    if requested == "uint8" and not eight_bit:
        raise DataError("{param} uint8 needs 8-bit images (an image folder or uint8 arrays); "
                        "use {param} float32 for this data", parameter="pixels")


def choose_pixels(requested: str, *, eight_bit: bool,
                  model_accepts_uint8: Callable[[], bool]) -> tuple[PixelType, str]:
    """The dtype images travel in, and why: the one uint8 decision (tune and fit).

    uint8 applies to 8-bit images (nothing is lost but a resize's fractions) and a model
    whose output is the same for both dtypes (its first operation casts its input).

    Args:
        requested: ``"auto"``, ``"uint8"`` or ``"float32"``.
        eight_bit: the data are 8-bit images (``Source.eight_bit``).
        model_accepts_uint8: asked only when it matters (it may trace the model).

    Raises:
        UsageError: uint8 was asked for and cannot apply.
    """
    from autobatch._errors import UsageError

    if requested == "float32":
        return "float32", "asked for (pixels float32)"
    check_pixels_request(requested, eight_bit=eight_bit)
    if not eight_bit:
        return "float32", "the data are not 8-bit images"
    if not model_accepts_uint8():
        if requested == "uint8":
            raise UsageError("the model's output changes when given uint8 images (its first "
                             "operation does not cast them); use {param} float32",
                             parameter="pixels")
        return "float32", "the model's output changes when given uint8 images"
    return "uint8", ("8-bit images and a model that casts its input: a quarter of the bytes "
                     "through cache, shuffle, batch and prefetch")
