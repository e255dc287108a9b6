"""autobatch leaves TensorFlow to the user (issue #18, item 4): the package does not require
a ``tensorflow`` distribution, and where none is importable every command that needs one
ends in one line naming the install command; the rest work without it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[1]

# TensorFlow made unimportable in the child, as on a machine that has none (the only way to
# have "none" beside the suite's own install; the child's finder refuses it, as a missing
# package would).
_WITHOUT_TENSORFLOW = """
import importlib.abc, sys
class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoTensorFlow())
from autobatch._cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUTOBATCH_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_package_does_not_require_a_tensorflow_distribution() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S)
    assert dependencies is not None
    assert "keras" in dependencies.group(1) and "tensorflow" not in dependencies.group(1)
    assert re.search(r'^tensorflow = \["tensorflow>=', text, re.M)  # the extra for a fresh box


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("notf") / "data", {"a": 3, "b": 3},
                             size=(16, 16))


@pytest.mark.parametrize("command", [
    ["tune", "{data}", "--model", "small_cnn", "--image-size", "16"],
    ["fit", "{data}", "--model", "small_cnn", "--image-size", "16"],
    ["probe", "{data}", "--model", "small_cnn", "--image-size", "16", "--batch-size", "2"],
    ["audit", "{data}", "--deep"],
    ["demo", "--dir", "{tmp}/demo"],
])
def test_commands_that_need_tensorflow_say_so_in_one_line(
        command: list[str], folder: Path, tmp_path: Path) -> None:
    args = [a.format(data=folder, tmp=tmp_path) for a in command]
    proc = _cli(*args, cwd=tmp_path)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "needs TensorFlow, which is not installed; pip install 'autobatch[tensorflow]'" in err
    assert not (tmp_path / "demo").exists()


def test_commands_that_never_need_it_work_without_it(folder: Path, tmp_path: Path) -> None:
    for args in (["env", "--json"], ["audit", str(folder)], ["--help"]):
        proc = _cli(*args, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr[-500:])
