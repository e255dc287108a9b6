"""A model file is checked before TensorFlow starts: one line, at once, exit 2.

Real files of each wrong kind (a text file named ``model.keras``, a zip without a
``config.json``, a missing file, a folder, another extension); the command line and the
library run in a fresh interpreter that must not have imported TensorFlow when it stops.
"""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import make_image_folder

from autobatch._errors import ModelError
from autobatch._models._files import check_model_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    text = root / "model.keras"
    text.write_text("this is not a model\n")
    no_config = root / "noconfig.keras"
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.writestr("metadata.json", "{}")
    bad_json = root / "badjson.keras"
    with zipfile.ZipFile(bad_json, "w") as archive:
        archive.writestr("config.json", "{not json")
    folder = root / "folder.keras"
    folder.mkdir()
    other = root / "model.h5"
    other.write_bytes(b"\x89HDF\r\n\x1a\n")
    return {"text": text, "no_config": no_config, "bad_json": bad_json, "folder": folder,
            "other": other, "missing": root / "missing.keras",
            "newline": root / "new\nline.keras"}


EXPECTED = {
    "text": "is not a Keras model",
    "no_config": "a zip without a config.json",
    "bad_json": "unreadable config.json",
    "folder": "is a folder, not a .keras file",
    "other": "neither a .keras file nor a built-in",
    "missing": "does not exist",
    "newline": "does not exist",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_wrong_file_is_one_line(bad_models: dict[str, Path], kind: str) -> None:
    with pytest.raises(ModelError) as caught:
        check_model_file(str(bad_models[kind]))
    message = str(caught.value)
    assert EXPECTED[kind] in message and "\n" not in message


def test_specs_that_are_not_files_pass_untouched() -> None:
    for spec in ("small_cnn", "my_models:build", object()):
        check_model_file(spec)


_CLI = """
import sys
from autobatch._cli import main
code = main(sys.argv[1:])
print("EXIT", code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""

_LIBRARY = """
import sys, autobatch
from autobatch import ModelError
call = getattr(autobatch, sys.argv[1])
try:
    call(sys.argv[2], sys.argv[3], image_size=16)
except ModelError as exc:
    print("ERROR", str(exc).replace("\\n", "|"))
print("TF", "tensorflow" in sys.modules)
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data"), {"a": 3, "b": 3}, size=(16, 16))


@pytest.mark.parametrize("command", ["tune", "fit"])
def test_the_cli_refuses_a_bad_model_file_at_once_without_tensorflow(
        bad_models: dict[str, Path], data: Path, command: str, tmp_path: Path) -> None:
    for kind in ("text", "missing", "folder", "other"):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", _CLI, command, str(data), "--model", str(bad_models[kind])],
            capture_output=True, text=True, cwd=tmp_path, timeout=120)
        elapsed = time.monotonic() - started
        assert done.stdout.strip().splitlines()[-1] == "EXIT 2 False False", (kind, done)
        errors = done.stderr.strip().splitlines()
        assert len(errors) == 1 and errors[0].startswith(f"autobatch {command}: error: ")
        assert EXPECTED[kind] in errors[0]
        assert elapsed < 15, elapsed  # TensorFlow's start-up alone takes longer here


def _library(function: str, model: Path, data: Path, cwd: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _LIBRARY, function, str(model), str(data)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)
    return done.stdout.strip().splitlines()


@pytest.mark.parametrize("function", ["tune", "fit"])
def test_the_library_refuses_a_bad_model_file_before_tensorflow(
        bad_models: dict[str, Path], data: Path, tmp_path: Path, function: str) -> None:
    lines = _library(function, bad_models["text"], data, tmp_path)
    assert len(lines) == 2 and lines[0].startswith("ERROR") and EXPECTED["text"] in lines[0]
    assert lines[1] == "TF False", lines


def test_fit_in_the_library_refuses_a_bad_model_file_in_one_line(
        bad_models: dict[str, Path], data: Path, tmp_path: Path) -> None:
    lines = _library("fit", bad_models["text"], data, tmp_path)
    assert lines[0].startswith("ERROR") and EXPECTED["text"] in lines[0], lines
