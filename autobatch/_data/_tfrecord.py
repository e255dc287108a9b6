"""TFRecord shards and the user's parse function as a source: a ``DatasetSource`` whose reads
autobatch builds itself, so that their parallelism is tuned with the rest.

The shards are read with ``interleave`` (cycle length and parallelism from the plan's
``num_parallel_calls``, at most one per shard) and parsed with ``parse`` (one serialized
record -> ``(x, y)``). The records are counted shard by shard before any tuning or training,
so that a corrupt record is reported with its shard and offset, instead of ending an epoch
early without a word.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autobatch._data._graphs import spec_text
from autobatch._data._tfdata import DatasetSource
from autobatch._data._userland import import_function, importable_name
from autobatch._errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from autobatch._settings import PipelineSettings

logger = logging.getLogger(__name__)

SHARD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")
"""What a shard in a folder is called (a glob names its own)."""
_OFFSET = re.compile(r"corrupted record at (\d+)")


def shard_files(data: str | os.PathLike[str]) -> list[str]:
    """The shards a folder holds (by suffix) or a glob matches, sorted."""
    text = os.fspath(data)
    if os.path.isdir(text):
        names = sorted(os.listdir(text))
        return [os.path.join(text, n) for n in names
                if n.endswith(SHARD_SUFFIXES) and os.path.isfile(os.path.join(text, n))]
    return sorted(p for p in glob.glob(text) if os.path.isfile(p))


def looks_like_shards(data: str | os.PathLike[str]) -> bool:
    """A folder of TFRecord shards (given without ``parse=``)."""
    return os.path.isdir(data) and bool(shard_files(data))


@dataclass(frozen=True)
class TFRecordSource(DatasetSource):
    """TFRecord ``files`` parsed by ``parse``; ``stamps`` are their size and mtime when
    counted (``unavailable`` names a shard changed since)."""

    files: tuple[str, ...] = ()
    parse: Any = None
    parse_name: str | None = None
    stamps: tuple[str, ...] = ()

    kind: ClassVar[str] = "tfrecord"
    title: ClassVar[str] = "TFRecord shards"

    @classmethod
    def from_shards(cls, data: str | os.PathLike[str], parse: Any, *,
                    num_examples: int | None = None) -> TFRecordSource:
        """The shards of a folder or glob, counted (one pass over the records, not parsed)
        unless ``num_examples`` is given."""
        if not callable(parse):
            raise UsageError("{param} must be a function of one serialized record that "
                             "returns (x, y)", parameter="parse")
        if num_examples is not None and (isinstance(num_examples, bool) or num_examples < 1):
            raise UsageError("{param} must be >= 1, got " + repr(num_examples),
                             parameter="num_examples")
        files = tuple(shard_files(data))
        if not files:
            raise DataError(f"no TFRecord shards in {os.fspath(data)!r}: pass a folder of "
                            f"{'/'.join(SHARD_SUFFIXES)} files or a glob that matches them")
        return cls.from_files(files, parse, num_examples=num_examples)

    @classmethod
    def from_files(cls, files: tuple[str, ...], parse: Any, *, num_examples: int | None = None,
                   stamps: tuple[str, ...] = ()) -> TFRecordSource:
        """The source of these shard files: parse tried on the first record, the records
        counted unless ``num_examples`` is given, the files stamped unless ``stamps`` are."""
        return cls(_parsed_or_error(files, parse),
                   num_examples_hint=num_examples if num_examples is not None
                   else count_records(files),
                   files=files, parse=parse, parse_name=importable_name(parse),
                   stamps=stamps if len(stamps) == len(files) else tuple(map(_stamp, files)))

    def elements(self, settings: PipelineSettings | None) -> tf.data.Dataset:
        if settings is None:
            return self.dataset
        return _read(self.files, self.parse, parallel=settings.num_parallel_calls,
                     deterministic=bool(settings.deterministic))

    def shard(self, count: int, index: int) -> DatasetSource:
        """By shard file where there are at least as many files as workers (each worker
        reads only its files), else by record."""
        if len(self.files) < count:
            return super().shard(count, index)
        return TFRecordSource.from_files(self.files[index::count], self.parse,
                                         stamps=self.stamps[index::count])

    def unavailable(self) -> list[str]:
        return [f for f, stamp in zip(self.files, self.stamps, strict=True)
                if _stamp(f) != stamp]

    # ---- identity and summaries
    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.parse_name}:{self.num_examples}:{self.limit}".encode())
        digest.update(spec_text(self.dataset.element_spec).encode())  # what parse returns
        for path, stamp in zip(self.files, self.stamps, strict=True):
            digest.update(f"{path}\0{stamp}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        root = os.path.commonpath(self.files) if self.files else None
        return {**super().summary(), "path": root, "parse": self.parse_name}

    # ---- the probe worker
    def modules(self) -> list[str]:
        return [self.parse_name.partition(":")[0]] if self.parse_name else []

    def describe(self, work_dir: Path) -> dict[str, Any]:
        if self.parse_name is None:
            raise DataError(
                "the parse function cannot be sent to the probe worker: define it at module "
                f"level in an importable module (got {_qualified(self.parse)})")
        return {"kind": self.kind, "files": list(self.files), "parse": self.parse_name,
                "stamps": list(self.stamps), "num_examples_hint": self.num_examples_hint,
                "limit": self.limit, "vocabulary": self.class_names()}

    @classmethod
    def rebuild(cls, description: dict[str, Any]) -> TFRecordSource:
        parse = import_function(description["parse"], what="parse function")
        files = tuple(description["files"])
        vocabulary = description.get("vocabulary")
        return cls(_read(files, parse, parallel=None, deterministic=True),
                   num_examples_hint=description.get("num_examples_hint"),
                   limit=description.get("limit"),
                   vocabulary=tuple(vocabulary) if vocabulary is not None else None,
                   files=files, parse=parse, parse_name=description["parse"],
                   stamps=tuple(description.get("stamps") or ()))


def _read(files: tuple[str, ...], parse: Any, *, parallel: int | None,
          deterministic: bool) -> tf.data.Dataset:
    """The shards interleaved (one reader per shard at most) and parsed."""
    import tensorflow as tf

    readers = max(1, min(len(files), parallel if parallel and parallel > 0 else 4))
    calls = tf.data.AUTOTUNE if parallel is None or parallel < 0 else max(1, parallel)
    shards = tf.data.Dataset.from_tensor_slices(list(files))
    # tf.data allows no more parallel readers than the cycle length.
    reading = calls if calls == tf.data.AUTOTUNE else min(calls, readers)
    records = shards.interleave(tf.data.TFRecordDataset, cycle_length=readers,
                                num_parallel_calls=reading if len(files) > 1 else None,
                                deterministic=deterministic)
    return records.map(parse, num_parallel_calls=calls, deterministic=deterministic)


def _parsed_or_error(files: tuple[str, ...], parse: Any) -> tf.data.Dataset:
    """The parsed shards, the parse function tried on the first record: a function that
    fails there (wrong feature names or types, a traceback while tf.data traces it) is a
    one-line ``DataError`` now, not an error in the middle of a tune."""
    import tensorflow as tf

    what = getattr(parse, "__qualname__", "the parse function")
    try:
        dataset = _read(files, parse, parallel=None, deterministic=True)
        next(iter(dataset.take(1)), None)
    except (tf.errors.OpError, TypeError, ValueError, KeyError) as exc:
        reason = str(getattr(exc, "message", "") or exc).strip().splitlines()
        raise DataError(
            f"the parse function {what} fails on the first record of {files[0]!r} "
            f"({reason[0] if reason else type(exc).__name__}); it must turn one serialized "
            "record into (x, y): check its feature names and types") from exc
    return dataset


def count_records(files: tuple[str, ...]) -> int:
    """The records in ``files``, shard by shard; a corrupt record is a ``DataError`` that
    names its shard and offset."""
    import tensorflow as tf

    started = time.perf_counter()
    total = 0
    for path in files:
        try:
            total += int(tf.data.TFRecordDataset(path).reduce(
                tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())
        except tf.errors.OpError as exc:
            if not isinstance(exc, (tf.errors.DataLossError, tf.errors.InvalidArgumentError)):
                raise DataError(f"cannot read TFRecord shard {path!r} "
                                f"({str(exc).splitlines()[0]})") from exc
            match = _OFFSET.search(str(exc))
            where = f" at offset {match.group(1)}" if match else ""
            raise DataError(
                f"TFRecord shard {path!r} has a corrupt record{where} (after {total} good "
                "records in the shards before it); rewrite or remove that shard") from exc
    logger.info("counted %d records in %d shards (%.1f s); pass num_examples= to skip the "
                "count", total, len(files), time.perf_counter() - started)
    return total


def _stamp(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _qualified(function: Any) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


