"""The coverage counter: counted inside the traced train step, read per epoch."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _fitmodels import counting_model

from autobatch._fit._coverage import CoverageReport, EpochCoverage

tf = pytest.importorskip("tensorflow")


def _arrays(n: int = 203) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 16, 16, 3), dtype=np.float32) * 255, rng.integers(0, 3, n)


def _dataset(x: np.ndarray, y: np.ndarray, batch: int = 32) -> object:
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def _fit_counted(model, ds, *, epochs: int, expected: int | None, **kwargs):
    from autobatch._fit._coverage import counting_train_step, make_coverage_callback

    report = CoverageReport(expected_examples=expected)
    with counting_train_step(model) as counter:
        history = model.fit(ds, epochs=epochs, verbose=0,
                            callbacks=[make_coverage_callback(counter, report, **kwargs)])
    return history, report


def test_counter_matches_model_own_count_and_user_train_step_still_runs() -> None:
    x, y = _arrays()
    model = counting_model()
    history, report = _fit_counted(model, _dataset(x, y), epochs=2, expected=203)
    assert int(model.seen.numpy()) == 406  # the user's own train_step override ran
    assert [e.examples_seen for e in report.epochs] == [203, 203]
    assert history.history["examples_seen"] == [203, 203]
    assert report.complete and report.total_examples_seen == 406


def test_wrapper_takes_effect_after_an_earlier_fit_and_is_removed_afterwards() -> None:
    x, y = _arrays(64)
    model = counting_model(steps_per_execution=3)  # several steps per traced call
    model.fit(_dataset(x, y), epochs=1, verbose=0)  # a cached train function already exists
    _, report = _fit_counted(model, _dataset(x, y, batch=10), epochs=1, expected=64)
    assert report.epochs[0].examples_seen == 64
    assert "train_step" not in vars(model)
    assert model.train_function is None  # the next fit retraces without the wrapper


def test_short_epoch_is_a_warning_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    x, y = _arrays(100)
    model = counting_model()
    ds = _dataset(x, y).take(2)  # stands in for a generator that ran short
    with caplog.at_level(logging.WARNING, logger="autobatch._fit._coverage"):
        _, report = _fit_counted(model, ds, epochs=1, expected=100,
                                 short_cause="a generator that ran short")
    assert report.epochs[0].examples_seen == 64
    assert not report.complete
    assert "trained on 64 of 100 usable examples" in caplog.text
    assert "a generator that ran short" in caplog.text


def test_unknown_length_takes_the_first_pass_as_reference() -> None:
    report = CoverageReport(expected_examples=None)
    report.epochs.append(EpochCoverage(1, 50, None))
    assert report.complete
    line = EpochCoverage(2, 40, 50, cause="ran short").line("images")
    assert line == "epoch 2: trained on 40 of 50 usable images — ran short"
    assert report.to_dict()["total_examples_seen"] == 50


def test_examples_seen_is_an_int_in_history_and_not_a_bar_metric(capsys) -> None:  # type: ignore[no-untyped-def]
    from autobatch._fit._coverage import counting_train_step, make_coverage_callback

    x, y = _arrays(70)
    model = counting_model()
    report = CoverageReport(expected_examples=70)
    printed: list[int] = []

    def on_epoch(entry: EpochCoverage) -> None:
        printed.append(entry.epoch)
        print(entry.line("images"))

    with counting_train_step(model) as counter:
        history = model.fit(_dataset(x, y), epochs=2, verbose=1,
                            callbacks=[make_coverage_callback(counter, report, noun="images",
                                                              on_epoch=on_epoch)])
    assert history.history["examples_seen"] == [70, 70]
    assert all(type(v) is int for v in history.history["examples_seen"])
    assert printed == [1, 2]
    out = capsys.readouterr().out
    assert "examples_seen" not in out  # not drawn as a float metric in the bar
    lines = out.replace("\r", "\n").splitlines()
    # Each coverage line stands alone, after the bar of its epoch ended its line.
    for epoch in (1, 2):
        line = f"epoch {epoch}: trained on 70 of 70 usable images"
        assert line in lines, out
    bar_end = max(i for i, ln in enumerate(lines) if "loss" in ln and "3/3" in ln)
    assert lines.index("epoch 2: trained on 70 of 70 usable images") > bar_end
    assert lines.index("epoch 1: trained on 70 of 70 usable images") < lines.index("Epoch 2/2")


def test_an_error_mid_epoch_starts_on_a_line_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from autobatch._cli._fit import _ProgressLine

    class Terminal(io.StringIO):  # stands in for a terminal: Keras' bar rewrites one line
        def isatty(self) -> bool:
            return True

    out = Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    line = _ProgressLine()
    callback = line.callback()
    line.close()
    assert out.getvalue() == ""  # nothing drawn yet: no blank line
    callback.on_train_batch_end(0)
    line.close()
    assert out.getvalue() == "\n"  # the bar was mid-line: the error gets a line of its own
    callback.on_train_batch_end(1)
    callback.on_epoch_end(0)  # Keras ends the epoch's line itself
    line.close()
    assert out.getvalue() == "\n"
