"""The README's fenced code blocks: each one is classified, and each one that can run does.

Every block must match a rule below (a new kind of block fails
``test_every_block_is_classified`` until it gets one). Commands and Python that run in
seconds run here as printed, in a temporary folder holding the ``data/train`` and
``autobatch-plan.json`` they name; longer ones are marked ``slow``; set-up lines (``pip
install``) and servers (``optuna-dashboard``) are checked for what can be checked.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autobatch._cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int

    @property
    def kind(self) -> str | None:
        return classify(self)

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang or 'plain'})"


def readme_blocks() -> list[Block]:
    blocks, lang, start, lines = [], None, 0, []
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence and lang is None:
            lang, start, lines = fence.group(1), number, []
        elif line.strip() == "```" and lang is not None:
            blocks.append(Block(lang, "\n".join(lines), start))
            lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, f"README.md:{start}: a fence is never closed"
    return blocks


def classify(block: Block) -> str | None:
    """What a block is, and so how it is checked (None: no rule matches)."""
    text = block.text
    if block.lang == "json":
        return "json"
    if "[--" in text:
        return "synopsis"  # a usage line: its flags must exist
    if text.startswith("report:"):
        return "report-output"
    if block.lang == "bash" and "pip install" in text:
        return "setup"
    if block.lang == "python":
        if "DispatchServer(" in text:
            return "service"
        if "autobatch.fit(" in text:
            return "python-slow"
        if "autobatch.audit(" in text or "write_report(" in text:
            return "python"
    if block.lang == "bash" and all(_command(ln).startswith("autobatch ")
                                    for ln in text.splitlines() if _command(ln)):
        return "commands"
    return None


def _command(line: str) -> str:
    """A line without its trailing comment (two spaces then ``#``)."""
    return re.split(r"\s{2,}#|^#", line, maxsplit=1)[0].strip()


def _blocks(kind: str) -> list[Block]:
    return [b for b in readme_blocks() if b.kind == kind]


def _commands(kind: str) -> list[str]:
    return [_command(ln) for b in _blocks(kind) for ln in b.text.splitlines() if _command(ln)]


# ---------------------------------------------------------------- a folder to run them in


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``data/train`` (two classes of small JPEGs) and ``autobatch-plan.json``."""
    from PIL import Image

    # tests/report/test_report.py's plan, imported under the name pytest gives it
    # (prepend import mode puts a test file's folder on sys.path).
    report_tests = str(Path(__file__).resolve().parent / "report")
    if report_tests not in sys.path:
        sys.path.insert(0, report_tests)
    from _plans import full_plan

    for label, colour in (("cats", (200, 30, 30)), ("dogs", (30, 30, 200))):
        folder = tmp_path / "data" / "train" / label
        folder.mkdir(parents=True)
        for index in range(4):
            Image.new("RGB", (40, 32), tuple(c + 5 * index for c in colour)).save(
                folder / f"{index}.jpg", quality=90)
    (tmp_path / "autobatch-plan.json").write_text(json.dumps(full_plan()))
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The venv's console script first on PATH, as after `pip install .`.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


# ---------------------------------------------------------------- the checks


def test_every_block_is_classified() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 10
    unknown = [str(b) for b in blocks if b.kind is None]
    assert unknown == [], f"no rule for these README blocks: {unknown}"
    # Each kind is present: a rule that matches nothing is a rule for a block that went.
    kinds = {b.kind for b in blocks}
    assert kinds >= {"json", "synopsis", "report-output", "setup", "python", "python-slow",
                     "commands", "service"}


def test_json_blocks_are_json_and_env_matches_the_real_output(workdir: Path) -> None:
    (block,) = _blocks("json")
    shown = json.loads(block.text)
    proc = _shell("autobatch env --json", workdir)
    assert proc.returncode == 0, proc.stderr
    real = json.loads(proc.stdout)

    def shape(value: Any) -> Any:
        return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else None

    assert shape(shown) == shape(real)


@pytest.mark.parametrize("command", _commands("commands"))
def test_commands_run_as_printed(command: str, workdir: Path) -> None:
    proc = _shell(command, workdir)
    assert proc.returncode == 0, f"{command!r}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip(), command
    if "--json" in command:
        json.loads(proc.stdout)
    if command.startswith("autobatch report"):
        out = shlex.split(command)[shlex.split(command).index("--out") + 1]
        assert (workdir / out).is_file()


def test_report_output_sample_has_the_real_output_lines(workdir: Path) -> None:
    (sample,) = _blocks("report-output")
    proc = _shell("autobatch report autobatch-plan.json --out report.html", workdir)
    assert proc.returncode == 0, proc.stderr

    def labels(text: str) -> list[str]:
        return [ln.split(":", 1)[0] if not ln.startswith(" ") else "" for ln in
                text.strip().splitlines()]

    assert labels(sample.text) == labels(proc.stdout)
    assert proc.stdout.splitlines()[0] == "report: report.html"


def test_synopsis_flags_exist() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    for block in _blocks("synopsis"):
        text = block.text.replace("\\\n", " ")
        name = re.match(r"\s*autobatch (\w+)", text)
        assert name, f"{block}: no command"
        options = subcommands[name.group(1)]._option_string_actions
        for flag in re.findall(r"--[\w-]+", text):
            assert flag in options, f"{block}: autobatch {name.group(1)} has no {flag}"
        for flag in re.findall(r"--\[no-\]([\w-]+)", text):
            assert f"--{flag}" in options and f"--no-{flag}" in options, f"{block}: {flag}"


def test_setup_blocks_name_what_exists() -> None:
    setup = "\n".join(b.text for b in _blocks("setup"))
    assert "pip install '.[tensorflow]' && autobatch demo" in setup
    extras = re.findall(r"pip install (?:-e )?'\.\[(\w+)\]'", setup)
    assert sorted(extras) == ["tensorflow", "test"], extras
    pyproject = (README.parent / "pyproject.toml").read_text()
    for extra in extras:
        assert re.search(rf"^{extra} = \[", pyproject, re.M), extra
    # The dashboard line is the command the report prints for the default storage.
    from autobatch._report._html import dashboard_command
    from autobatch._search._study import default_storage_url

    line = next(ln for ln in setup.splitlines() if ln.startswith("optuna-dashboard"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("AUTOBATCH_CACHE_DIR", "XDG_CACHE_HOME")}
    printed = _expand(line, env)
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        assert printed == dashboard_command(default_storage_url())
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _expand(line: str, env: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: env[m.group(1)], line)


@pytest.mark.parametrize("block", _blocks("python"), ids=str)
def test_python_blocks_run(block: Block, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from _plans import full_plan

    namespace: dict[str, Any] = {"plan": full_plan()}
    exec(compile(block.text, str(block), "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    if "write_report(" in block.text:
        assert (workdir / "report.html").is_file() and (workdir / "plots").is_dir()
        assert "report.html" in out
    else:
        assert "8 of 8" in out or "8 image files" in out, out


def test_service_block_starts_a_cluster_that_serves_every_example() -> None:
    """The README's dispatcher and worker lines, run here on loopback (a free port for 5050,
    localhost for HOST): a ``distributed_epoch`` job on them yields each element once."""
    import socket

    import tensorflow as tf

    (block,) = _blocks("service")
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    code = block.text.replace("5050", str(port)).replace("HOST:", "localhost:")
    namespace: dict[str, Any] = {}
    exec(compile(code, str(block), "exec"), namespace)  # noqa: S102
    served = tf.data.Dataset.range(20).apply(tf.data.experimental.service.distribute(
        "distributed_epoch", f"grpc://localhost:{port}"))
    assert sorted(int(v) for v in served.as_numpy_iterator()) == list(range(20))
    namespace["worker"]._stop()  # noqa: SLF001 - TF's servers have no public stop
    namespace["dispatcher"]._stop()  # noqa: SLF001


@pytest.mark.slow
@pytest.mark.parametrize("block", _blocks("python-slow"), ids=str)
def test_slow_python_blocks_run(block: Block, workdir: Path) -> None:
    """The three input situations, each tuned briefly (the block's ``epochs=10`` becomes one
    epoch and a 20 s tune: the calls are the README's, the budget is the test's)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x_train = rng.integers(0, 255, (64, 32, 32, 3), dtype=np.uint8)
    y_train = np.arange(64) % 2

    def make_examples():  # noqa: ANN202
        for index in range(1003):
            yield x_train[index % 64], y_train[index % 64]

    code = block.text.replace("epochs=10", 'epochs=1, tune_options={"time_budget": 20}')
    assert code.count("tune_options") == code.count("autobatch.fit("), "a fit call changed"
    namespace = {"model": model, "x_train": x_train, "y_train": y_train,
                 "make_examples": make_examples}
    exec(compile(code, str(block), "exec"), namespace)  # noqa: S102
    # The last fit's count: the generator's 1003, or every file of data/train.
    expected = 1003 if "make_examples" in code else len(list(workdir.glob("data/train/*/*")))
    assert namespace["history"].history["examples_seen"] == [expected]


@pytest.mark.slow
def test_demo_runs_as_printed(tmp_path: Path) -> None:
    """``autobatch demo`` as the quick start prints it (about 2.5 minutes on 2 cores)."""
    proc = _shell("autobatch demo", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "autobatch-demo" / "report.html").is_file()
    assert "cudart_stub" not in proc.stderr and "absl::InitializeLog" not in proc.stderr
