"""Shared fixtures: real image files written to temp dirs, tiny models."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_image(path: Path, *, size: tuple[int, int] = (40, 48), mode: str = "RGB",
                fmt: str | None = None, seed: int = 0, **save_kwargs: object) -> Path:
    """Write a real image file with Pillow (random pixels, deterministic per seed)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "I;16": 1}[mode]
    if mode == "I;16":
        array = rng.integers(0, 65535, size=(height, width), dtype=np.uint16)
        image = Image.fromarray(array, mode="I;16")
    else:
        shape = (height, width) if channels == 1 else (height, width, channels)
        array = rng.integers(0, 255, size=shape, dtype=np.uint8)
        image = Image.fromarray(array, mode=mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **save_kwargs)
    return path


@pytest.fixture
def make_image() -> Callable[..., Path]:
    return write_image


def make_image_folder(root: Path, counts: dict[str, int], *, size: tuple[int, int] = (40, 48),
                      fmt: str = "JPEG", ext: str = ".jpg") -> Path:
    """A Keras-style folder: one sub-folder per class holding ``counts[class]`` images."""
    seed = 0
    for class_name, count in counts.items():
        for i in range(count):
            write_image(root / class_name / f"img_{i:04d}{ext}", size=size, fmt=fmt, seed=seed)
            seed += 1
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three uneven classes, 23 small JPEGs in all."""
    return make_image_folder(tmp_path / "data", {"cats": 10, "dogs": 8, "birds": 5})


def _nvml_has_gpu() -> bool:
    from autobatch._env import gpu_info

    return bool(gpu_info()[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests skip cleanly where NVML finds no device."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items or _nvml_has_gpu():
        return
    skip = pytest.mark.skip(reason="no GPU visible to NVML")
    for item in gpu_items:
        item.add_marker(skip)
