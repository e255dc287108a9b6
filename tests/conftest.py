"""Shared fixtures: real image files written to temp dirs, tiny models."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Every temporary folder the suite's tunes, fits, probes and audits make (in this process and
# in the workers it starts) goes into one folder of the session's own; at the end no
# ``autobatch-*`` folder may be left in it, whatever was interrupted or failed on the way.
# A process the suite starts that imports a test module (a probe worker importing a parse or
# augment function by name, a child computing a fingerprint) is inside that folder already:
# it makes no folder of its own, which nothing would remove.
_INHERITED = os.environ.get("TMPDIR", "")
_OWN_SESSION_TMP = "autobatch-test-session-" not in _INHERITED
if not _OWN_SESSION_TMP:
    _SESSION_TMP = _INHERITED
else:
    _SESSION_TMP = tempfile.mkdtemp(prefix="autobatch-test-session-")
    os.environ["TMPDIR"] = _SESSION_TMP
    tempfile.tempdir = _SESSION_TMP


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


def assert_cli_usage_errors(cases: list[tuple[list[str], str]],
                            capsys: pytest.CaptureFixture[str]) -> None:
    """Each ``(argv, message)``: the CLI exits 2 with one line on stderr holding ``message``."""
    from autobatch._cli import main

    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The current folder of a CLI run that imports the user's own module from it (the CLI
    adds the folder to ``sys.path``): path, folder and the modules imported from it are
    restored afterwards."""
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name in [n for n, m in sys.modules.items()
                 if str(getattr(m, "__file__", "") or "").startswith(str(tmp_path))]:
        sys.modules.pop(name, None)


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a tune, fit, probe or audit left a temporary folder behind."""
    import sys

    pipeline = sys.modules.get("autobatch._data._tail")
    if pipeline is not None:
        # What the process removes at exit (atexit runs after this hook): its private
        # disk-cache folders.
        pipeline.remove_private_cache_folders()
    if not _OWN_SESSION_TMP:
        return  # a session inside another one's folder: the outer one checks and removes it
    left = sorted(p.name for p in Path(_SESSION_TMP).glob("autobatch-*"))
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"temporary folders left behind by the suite: {', '.join(left)}",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
