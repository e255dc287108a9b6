"""Coverage accounting: count, inside the traced training step, the examples trained on.

The count is not inferred from ``steps x batch``: the model's ``train_step`` is wrapped on
the instance so that a ``tf.Variable`` grows by each batch's leading dimension inside the
step Keras traces. Keras 3's TensorFlow trainer builds its train function from
``self._make_function(self.train_step)`` (attribute lookup at build time), so an instance
attribute wins over the class method, and the wrapper calls the bound method it replaced,
so a user's own ``train_step`` override still runs. A callback reads and resets the counter
at epoch boundaries and compares it with the usable count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class EpochCoverage:
    """What one epoch trained on."""

    epoch: int
    """1-based epoch number."""
    examples_seen: int
    expected_examples: int | None
    """The usable count one epoch should cover, or None when not known (a generator
    without a length before its first pass)."""
    cause: str | None = None
    """Why ``examples_seen`` differs from ``expected_examples``; None when they match."""

    @property
    def complete(self) -> bool:
        return self.expected_examples is None or self.examples_seen == self.expected_examples

    def line(self, noun: str = "examples") -> str:
        """One line for the terminal: ``epoch 1: trained on 1003 of 1003 usable images``."""
        if self.expected_examples is None:
            text = f"epoch {self.epoch}: trained on {self.examples_seen} {noun}"
        else:
            text = (
                f"epoch {self.epoch}: trained on {self.examples_seen} of "
                f"{self.expected_examples} usable {noun}"
            )
        if self.cause:
            text += f" — {self.cause}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "examples_seen": self.examples_seen,
            "expected_examples": self.expected_examples,
            "complete": self.complete,
            "cause": self.cause,
        }


@dataclass
class CoverageReport:
    """Per-epoch coverage of one ``fit`` call.

    Attributes:
        expected_examples: usable training examples per epoch (after the validation split).
        epochs: one ``EpochCoverage`` per finished epoch.
        uneven_last_batch: for a generator, the size of its last batch when it is smaller
            than the others (the generator's length does not divide evenly), else None.
        notes: further findings (for example a user-passed ``steps_per_epoch``).
    """

    expected_examples: int | None
    epochs: list[EpochCoverage] = field(default_factory=list)
    uneven_last_batch: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_examples_seen(self) -> int:
        return sum(e.examples_seen for e in self.epochs)

    @property
    def complete(self) -> bool:
        return all(e.complete for e in self.epochs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected_examples": self.expected_examples,
            "total_examples_seen": self.total_examples_seen,
            "complete": self.complete,
            "uneven_last_batch": self.uneven_last_batch,
            "notes": list(self.notes),
            "epochs": [e.to_dict() for e in self.epochs],
        }


def _leading_dimension(data: Any) -> Any:
    """The batch size of one step's data, as a traced tensor."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters import data_adapter_utils

    x, _, _ = data_adapter_utils.unpack_x_y_sample_weight(data)
    leaves = [t for t in tf.nest.flatten(x) if t is not None]
    if not leaves:
        return tf.constant(0, tf.int64)
    return tf.cast(tf.shape(leaves[0])[0], tf.int64)


class ExampleCounter:
    """A ``tf.Variable`` the wrapped train step adds each batch's size to."""

    def __init__(self, model: Any) -> None:
        import tensorflow as tf

        strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        with strategy.scope():
            # SUM across replicas: each replica adds its own share of the global batch.
            self.variable = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="autobatch_examples_seen",
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM,
            )

    def read_and_reset(self) -> int:
        value = int(self.variable.numpy())
        self.variable.assign(0)
        return value


@contextmanager
def counting_train_step(model: Any) -> Iterator[ExampleCounter]:
    """Wrap ``model.train_step`` on the instance for the duration of the block.

    The model's cached train function is dropped on entry (so Keras retraces with the
    wrapper) and on exit (so the model trains without it afterwards).
    """
    counter = ExampleCounter(model)
    original = model.train_step  # bound: the user's override, if any, stays in the chain

    def train_step(data: Any) -> Any:
        counter.variable.assign_add(_leading_dimension(data))
        return original(data)

    with instance_attribute(model, "train_step", train_step), retracing(model):
        yield counter


@contextmanager
def instance_attribute(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name = value`` on the instance for the block, then what it was (an instance
    attribute put back, or the class's seen again). ``object.__setattr__``: a plain function
    attribute, kept out of Keras' layer tracking."""
    had = name in vars(owner)
    before = vars(owner).get(name)
    object.__setattr__(owner, name, value)
    try:
        yield
    finally:
        if had:
            object.__setattr__(owner, name, before)
        else:
            object.__delattr__(owner, name)


@contextmanager
def retracing(model: Any) -> Iterator[None]:
    """Drop the model's cached train function on entry (Keras retraces with what the block
    wrapped) and on exit (it trains without the wrappers afterwards)."""
    model.train_function = None
    try:
        yield
    finally:
        model.train_function = None


def make_coverage_callback(
    counter: ExampleCounter,
    report: CoverageReport,
    *,
    noun: str = "examples",
    short_cause: str | None = None,
    on_epoch: Any = None,
) -> Any:
    """A Keras callback that reads the counter at each epoch end and records coverage.

    Args:
        counter: the counter the wrapped train step increments.
        report: filled in place, one ``EpochCoverage`` per epoch.
        noun: what an example is called in the log line ("images", "examples").
        short_cause: the known reason an epoch may fall short (for example a user-passed
            ``steps_per_epoch``), used when the count differs.
        on_epoch: optional ``callable(EpochCoverage)``, e.g. the CLI printing a line.
    """
    import keras

    class CoverageCallback(keras.callbacks.Callback):
        # Keras runs the callbacks a user passes before its own History and ProgbarLogger,
        # so at this callback's on_epoch_end the progress bar has not finished its line: a
        # line written then would be glued to the bar. The epoch's line (log and
        # ``on_epoch``) waits for the next epoch's start or the end of training, by when
        # the bar has ended its line.
        def __init__(self) -> None:
            super().__init__()
            self._pending: EpochCoverage | None = None

        def _announce(self) -> None:
            entry, self._pending = self._pending, None
            if entry is None:
                return
            if entry.complete:
                logger.info("%s", entry.line(noun))
            else:
                logger.warning("%s", entry.line(noun))
            if on_epoch is not None:
                on_epoch(entry)

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._announce()
            counter.variable.assign(0)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            seen = counter.read_and_reset()
            expected = report.expected_examples
            if expected is None and report.epochs:
                # A generator of unknown length: its first full pass sets the reference.
                expected = report.epochs[0].examples_seen
            entry = EpochCoverage(epoch + 1, seen, expected)
            if not entry.complete:
                entry.cause = _explain(seen, expected, short_cause)
            report.epochs.append(entry)
            # The count goes into history.history["examples_seen"] as an int, and not into
            # ``logs``: Keras' progress bar shows every key in logs as a float metric
            # ("examples_seen: 300.0000").
            history = getattr(self.model, "history", None)
            if isinstance(history, keras.callbacks.History):
                history.history.setdefault("examples_seen", []).append(int(seen))
            self._pending = entry

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            self._announce()

    return CoverageCallback()


def _explain(seen: int, expected: int | None, short_cause: str | None) -> str:
    if expected is None:
        return "unknown expected count"
    if short_cause:
        return short_cause
    if seen < expected:
        return (
            f"{expected - seen} usable examples were not trained on: the input ran short "
            "(a generator that ended early, or training stopped mid-epoch)"
        )
    return (
        f"{seen - expected} examples more than usable: the input yielded more than one pass "
        "(a generator longer than its declared length)"
    )


# TensorFlow errors that a changed input file raises inside the input pipeline: deleted
# (NotFoundError from ReadFile), unreadable (PermissionDeniedError; FailedPreconditionError
# when a folder took its place), cut or overwritten (DataLossError, InvalidArgumentError
# from DecodeImage).
_FILE_FAULTS = ("NotFoundError", "PermissionDeniedError", "FailedPreconditionError",
                "DataLossError", "InvalidArgumentError")


def data_fault(exc: BaseException, counter: ExampleCounter, report: CoverageReport,
               sources: list[Any], noun: str = "examples") -> Exception | None:
    """The one-line ``DataError`` for a training run that failed on its input data (a file
    deleted, made unreadable or overwritten after the folder was indexed), or None when
    ``exc`` is not such a failure (it is then re-raised as it is).

    The message names the file, the examples trained so far (this epoch and in all) and the
    epoch's shortfall; the partial epoch is appended to ``report`` with that cause, and the
    error carries ``coverage`` (the report) and ``tf_error`` (TensorFlow's own exception).
    """
    if type(exc).__name__ not in _FILE_FAULTS or not type(exc).__module__.startswith(
            "tensorflow"):
        return None
    text = str(exc)
    changed = [path for source in sources if source is not None
               for path in source.unavailable()]
    if "IteratorGetNext" not in text and not changed:
        return None  # raised by the model's own step, not by reading the data
    from autobatch._errors import DataError

    reason = _tf_reason(text)
    named = next((p for p in changed if p in text), None) or _path_in(reason) or \
        (changed[0] if changed else None)
    if named is not None:
        reason = reason.rpartition("; ")[2] or reason  # TF writes "PATH; why"
        what = f"{named!r} {_verb(exc)} during fit ({reason})"
    else:
        what = f"an input file failed during fit ({reason})"
    seen = int(counter.variable.numpy())
    expected = report.expected_examples
    epoch = len(report.epochs) + 1
    before = report.total_examples_seen
    if expected is None:
        progress = f"epoch {epoch} stopped after {seen} {noun}"
    else:
        progress = (f"epoch {epoch} stopped after {seen} of {expected} usable {noun} "
                    f"({max(expected - seen, 0)} not trained on)")
    if before:
        progress += f", {before + seen} trained in all"
    if changed:
        total = sum(s.num_examples or 0 for s in sources if s is not None)
        gone = f"{len(changed)} of the {total} files indexed at the start are missing or " \
               "changed now; restore them, or rerun (the folder is indexed again)"
    else:
        gone = "find it with 'autobatch audit --deep' and remove or replace it"
    report.epochs.append(EpochCoverage(epoch, seen, expected, cause=what))
    error = DataError(f"{what}: {progress}; {gone}")
    error.coverage = report  # type: ignore[attr-defined]
    error.tf_error = exc  # type: ignore[attr-defined]
    return error


def _tf_reason(text: str) -> str:
    """TensorFlow's own one-line reason out of its multi-line op error."""
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("[[") and i > 0 and lines[i - 1]:
            return lines[i - 1]
    kept = [line for line in lines if line and not line.startswith(("[[", "Graph execution",
                                                                  "Detected at", "<stack"))]
    return kept[0] if kept else "no detail"


def _path_in(reason: str) -> str | None:
    """The file TensorFlow names at the head of ``PATH; No such file or directory``."""
    head, sep, _ = reason.partition("; ")
    return head if sep and head.startswith("/") else None


def _verb(exc: BaseException) -> str:
    return {"NotFoundError": "vanished", "PermissionDeniedError": "became unreadable",
            "FailedPreconditionError": "became unreadable"}.get(type(exc).__name__,
                                                                "no longer decodes")
