"""Data that changes under ``fit`` (issue #23): an image deleted, made unreadable or
overwritten after the folder was indexed ends training with one ``DataError`` line that names
the file, the examples trained so far and the epoch's shortfall -- never TensorFlow's
traceback -- from the API and from ``autobatch fit``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from _fitmodels import counting_model
from conftest import make_image_folder

import autobatch
from autobatch._errors import DataError
from autobatch._plan import Plan

keras = pytest.importorskip("keras")

PER_CLASS = 20
N = 2 * PER_CLASS


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "data", {"a": PER_CLASS, "b": PER_CLASS}, size=(16, 16))


def _victims(folder: Path) -> list[Path]:
    """Every other image of class a: 10 of the 40, spread over the shuffled epoch."""
    return sorted((folder / "a").iterdir())[::2]


def _spoil(paths: list[Path], how: str) -> None:
    for path in paths:
        if how == "deleted":
            path.unlink()
        elif how == "overwritten":
            path.write_bytes(b"these bytes are no image")
        elif how == "a_folder":  # unreadable even to root
            path.unlink()
            path.mkdir()
        else:  # unreadable
            path.chmod(0)


class _SpoilAtStart(keras.callbacks.Callback):  # type: ignore[misc]
    """Spoils the files once the plan is made and the pipeline built, as training starts."""

    def __init__(self, paths: list[Path], how: str) -> None:
        super().__init__()
        self.paths, self.how = paths, how

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        _spoil(self.paths, self.how)


@pytest.mark.parametrize("how", ["deleted", "overwritten", "a_folder", "unreadable"])
def test_fit_names_the_file_and_the_counts(folder: Path, how: str) -> None:
    if how == "unreadable" and os.geteuid() == 0:
        pytest.skip("running as root: chmod 0 does not stop root from reading the file")
    victims = _victims(folder)
    model = counting_model((16, 16, 3), 2)
    plan = Plan(batch_size=4, num_examples=N, ceiling_batch_size=8, image_size=(16, 16))
    with pytest.raises(DataError) as caught:
        autobatch.fit(model, folder, epochs=2, plan=plan, verbose=0,
                      callbacks=[_SpoilAtStart(victims, how)])
    error = caught.value
    message = str(error)
    assert "\n" not in message and "Graph execution error" not in message
    assert error.__cause__ is None and error.__suppress_context__
    named = [p for p in victims if repr(str(p)) in message]
    assert len(named) == 1, message  # one of the spoiled files, by its full path
    verb = {"deleted": "vanished", "overwritten": "no longer decodes",
            "a_folder": "became unreadable", "unreadable": "became unreadable"}[how]
    assert f"{repr(str(named[0]))} {verb} during fit" in message
    # The counts are the model's own: what its train_step saw before the failure.
    trained = int(model.seen.numpy())
    coverage = error.coverage  # type: ignore[attr-defined]
    partial = coverage.epochs[-1]
    assert partial.examples_seen + sum(e.examples_seen for e in coverage.epochs[:-1]) == trained
    assert not partial.complete and partial.expected_examples == N
    assert (f"epoch {partial.epoch} stopped after {partial.examples_seen} of {N} usable images "
            f"({N - partial.examples_seen} not trained on)") in message
    assert f"{len(victims)} of the {N} files indexed at the start are missing or changed" \
        in message
    assert type(error.tf_error).__module__.startswith("tensorflow")  # type: ignore[attr-defined]


def test_an_error_of_the_model_itself_is_not_called_a_data_fault(folder: Path) -> None:
    """A TensorFlow error raised by the training step, with every file intact, stays as it is."""
    import tensorflow as tf

    model = counting_model((16, 16, 3), 2)

    def failing_step(data: Any) -> Any:
        tf.debugging.assert_equal(tf.constant(1), tf.constant(2), message="model bug")
        return {}

    object.__setattr__(model, "train_step", failing_step)
    plan = Plan(batch_size=4, num_examples=N, ceiling_batch_size=8, image_size=(16, 16))
    with pytest.raises(tf.errors.InvalidArgumentError, match="model bug"):
        autobatch.fit(model, folder, epochs=1, plan=plan, verbose=0)


def test_cli_fit_with_a_plan_ends_in_one_line(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import autobatch._fit._train as train
    from autobatch._cli import main

    # A name with a newline and an ESC among the files that vanish: the line stays one line.
    victims = _victims(folder)  # img_0000, img_0002, ...
    odd = folder / "a" / "gone\n\x1b[31mred.jpg"
    (folder / "a" / "img_0001.jpg").rename(odd)
    victims.append(odd)
    plan_path = Plan(batch_size=4, num_examples=N, ceiling_batch_size=8, image_size=(16, 16),
                     model={"spec": "small_cnn"}).save(tmp_path / "plan.json")
    real_adapt = train.adapt_plan

    def adapt_then_delete(*args: Any, **kwargs: Any) -> Any:
        adapted = real_adapt(*args, **kwargs)  # the plan is made; the files go now
        _spoil(victims, "deleted")
        return adapted

    monkeypatch.setattr(train, "adapt_plan", adapt_then_delete)
    code = main(["fit", "--plan", str(plan_path), str(folder)])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err + captured.out and "\x1b" not in captured.err
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("autobatch fit: error: ")
    assert any(repr(str(p)) in line for p in victims), line
    assert f"of {N} usable images" in line and f"{len(victims)} of the {N} files" in line
