"""Image folders made from real photographs that ship with scikit-image.

Used by ``autobatch demo``, the examples and the benchmarks, so that nothing is downloaded:
each class is one sample photograph, cropped, flipped, rotated and scaled into many
photo-sized JPEGs.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Colour photographs bundled inside the scikit-image wheel (no network needed).
PHOTO_CLASSES: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left",
                                  "retina", "hubble_deep_field", "horse")


def _load_photo(name: str) -> np.ndarray:
    from skimage import data as skdata

    if name == "motorcycle_left":
        image = skdata.stereo_motorcycle()[0]
    else:
        image = getattr(skdata, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float64) / max(1, image.max()))).astype(np.uint8)
    return image[..., :3]


def make_photo_folder(
    root: str | Path,
    *,
    classes: Sequence[str] = PHOTO_CLASSES[:3],
    images_per_class: int | Sequence[int] = 60,
    size: tuple[int, int] = (375, 500),
    seed: int = 0,
    quality: int = 90,
) -> Path:
    """Write a Keras-style folder of photo-sized JPEGs, one class per sample photograph.

    Args:
        root: the folder to create (class sub-folders go inside).
        classes: names of scikit-image sample photographs, one class each.
        images_per_class: how many images per class (one number, or one per class).
        size: (height, width) of every image written.
        seed: makes the crops and flips reproducible.
        quality: JPEG quality.

    Returns:
        The root folder.
    """
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = (
        [images_per_class] * len(classes)
        if isinstance(images_per_class, int)
        else list(images_per_class)
    )
    height, width = size
    for class_name, count in zip(classes, counts, strict=True):
        photo = Image.fromarray(_load_photo(class_name))
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            scale = rng.uniform(0.5, 1.0)
            crop_w = max(16, int(photo.width * scale))
            crop_h = max(16, int(photo.height * scale))
            left = int(rng.integers(0, photo.width - crop_w + 1))
            top = int(rng.integers(0, photo.height - crop_h + 1))
            image = photo.crop((left, top, left + crop_w, top + crop_h))
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            image = image.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            image.save(folder / f"{class_name}_{index:04d}.jpg", format="JPEG", quality=quality)
    logger.info("wrote %d images in %d classes to %s", sum(counts), len(classes), root)
    return root


def make_demo_folder(data_dir: str | Path, *, images_per_class: int = 80) -> Path:
    """The folder ``autobatch demo`` makes: three photo classes of ``images_per_class``,
    3/4 and 1/2 of that many 240x320 JPEGs, plus the problem files of ``add_problem_files``
    (the benchmarks make the same folder)."""
    root = Path(data_dir)
    make_photo_folder(root, classes=PHOTO_CLASSES[:3],
                      images_per_class=[images_per_class, images_per_class * 3 // 4,
                                        images_per_class // 2], size=(240, 320))
    add_problem_files(root)
    return root


def add_problem_files(data_dir: Path) -> None:
    """Files Keras' loader skips or fails on silently (empty, truncated, AppleDouble, a
    stray file at the root, a format it does not read), so the audit has something to say."""
    first_class = sorted(p for p in data_dir.iterdir() if p.is_dir())[0]
    sample = next(first_class.glob("*.jpg"))
    (first_class / "empty.jpg").write_bytes(b"")
    (first_class / "truncated.jpg").write_bytes(sample.read_bytes()[:600])
    (first_class / "._resource_fork.jpg").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    (first_class / "notes.txt").write_text("not an image\n")
    shutil.copy(sample, data_dir / "stray_at_root.jpg")
    from PIL import Image

    with Image.open(sample) as image:
        image.save(first_class / "photo.webp", format="WEBP")
