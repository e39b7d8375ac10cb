"""Bulk scoring of a partitioned data set: one output partition per input partition, all written or none.

``predict_partitions`` scores every file a glob matches (Parquet or CSV, one row per patient) with
``predict_frame``, either one partition after another in this process (``engine="local"``) or as one task per
partition on Dask (``engine="dask"``: a ``distributed.LocalCluster`` of ``workers`` single-threaded processes, or
any running scheduler given by its address). Both engines run the same task and write byte-identical files.

Workers receive the bundle's path and the hash of its metadata, never the bundle itself: each process loads and
verifies the bundle once and keeps it for the rest of its tasks. A worker returns the Parquet bytes of its
partition's predictions and this process writes them into the temporary output folder, so a failure (a bad row,
an unreadable file) leaves nothing behind, not even a partition a worker was finishing. Dask is imported only when
the Dask engine runs (optional extra ``precimed[scale]``).
"""

from __future__ import annotations

import copy
import glob
import hashlib
import io
import os
import pickle
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from precimed import errors
from precimed.atomic import atomic_dir
from precimed.bundle import Bundle, load_bundle
from precimed.data import read_table
from precimed.errors import ConfigError, DataError, PrecimedError
from precimed.limits import check_input_size
from precimed.workflows._run import check_outputs_apart
from precimed.workflows.predicting import predict_frame

ENGINES = ("local", "dask")
PARTITION_SUFFIXES = (".parquet", ".csv")
MAX_PARTITIONS = 100_000
GLOB_CHARS = "*?["


@dataclass
class BulkResult:
    """What a bulk run wrote: the output folder, one entry per partition (input, output, rows) and the model."""

    out_dir: Path
    model: str
    engine: str
    partitions: list[tuple[Path, Path, int]]

    @property
    def rows(self) -> int:
        return sum(n for _, _, n in self.partitions)


def has_glob(text: str | Path) -> bool:
    """Whether an --input is a glob pattern (scored partition by partition) rather than one file."""
    return any(c in str(text) for c in GLOB_CHARS)


# ----- the partitions --------------------------------------------------------------------------------
def _pattern_root(pattern: str) -> Path:
    """The deepest folder of ``pattern`` without glob characters: the folder that holds the data set."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if has_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def find_partitions(pattern: str | Path) -> list[Path]:
    """The files ``pattern`` matches, sorted: each a Parquet or CSV file within the input limit, at most
    ``MAX_PARTITIONS`` of them, no two with the same stem (their outputs would collide)."""
    pattern = os.path.expanduser(str(pattern))
    found: list[Path] = []
    for i, name in enumerate(glob.iglob(pattern, recursive=True)):
        if i >= MAX_PARTITIONS:
            raise ConfigError(f"--input {pattern}: matches more than {MAX_PARTITIONS:,} files; score the data set "
                              "in parts, or merge small partitions")
        found.append(Path(name))
    if not found:
        raise ConfigError(f"--input {pattern}: no file matches this pattern")
    found.sort()
    stems: dict[str, Path] = {}
    for p in found:
        if not p.is_file():
            raise ConfigError(f"--input {pattern}: {p} is not a file; the pattern must match Parquet or CSV files only")
        if p.suffix.lower() not in PARTITION_SUFFIXES:
            raise ConfigError(f"--input {pattern}: {p} is neither Parquet nor CSV; the pattern must match "
                              ".parquet or .csv files only")
        if p.stem in stems:
            raise ConfigError(f"--input {pattern}: {stems[p.stem]} and {p} would both be written as "
                              f"{p.stem}.parquet; give every partition its own file name")
        stems[p.stem] = p
        check_input_size(p)
    return found


# ----- one partition (runs in a worker or in this process) -------------------------------------------
_CACHE: dict[tuple[str, str], Bundle] = {}
_CACHE_LOCK = threading.Lock()


def bundle_fingerprint(bundle_dir: Path | str) -> str:
    """The sha256 of the bundle's metadata.json, which records the hash of every other file."""
    return hashlib.sha256((Path(bundle_dir) / "metadata.json").read_bytes()).hexdigest()


def _cached_bundle(bundle_dir: str, fingerprint: str) -> Bundle:
    """The bundle at ``bundle_dir``, loaded and verified once per process (per version of the bundle)."""
    key = (bundle_dir, fingerprint)
    with _CACHE_LOCK:
        bundle = _CACHE.get(key)
        if bundle is None:
            bundle = load_bundle(bundle_dir)
            if bundle_fingerprint(bundle_dir) != fingerprint:
                raise ConfigError(f"{bundle_dir}: the bundle changed while its partitions were scored; run again")
            _CACHE.clear()  # a long-lived worker keeps one bundle, the one in use
            _CACHE[key] = bundle
        return bundle


def _parquet_bytes(frame: Any) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def score_partition(bundle_dir: str, fingerprint: str, source: str, model: str | None,
                    allow_out_of_range: bool, runtime: str = "auto", threads: int | None = 1) -> tuple[bytes, int]:
    """Score one partition: its predictions as Parquet bytes and its row count. Errors name the file (and the
    patient, as ``predict_frame`` does). ``threads`` of the compiled path per partition (1: a Dask worker is one
    thread; the local engine gives the machine's CPUs)."""
    try:
        bundle = _cached_bundle(bundle_dir, fingerprint)
        frame = read_table(source)
        out = predict_frame(bundle, frame, model=model, allow_out_of_range=allow_out_of_range, where=source,
                            runtime=runtime, threads=threads)
        return _parquet_bytes(out), len(out)
    except PrecimedError as exc:
        raise _portable(exc, source) from None


def _portable(exc: PrecimedError, source: str) -> PrecimedError:
    """``exc`` naming the partition file (predict_frame's range errors name the patient, not the file), as an
    error that survives pickling (a worker sends it back): the same class with its attributes when it can, else
    the nearest precimed.errors class (e.g. for BundleInvalid, whose constructor takes two arguments)."""
    message = str(exc)
    if source not in message:
        message = f"{source}: {message}"
    try:
        named = copy.copy(exc)
        named.args = (message,)
        pickle.loads(pickle.dumps(named))
        return named
    except Exception:  # noqa: BLE001 - any failure to round-trip means: send a plain copy
        base = next(b for b in type(exc).__mro__ if b.__module__ == errors.__name__)
        return base(message)


# ----- engines ---------------------------------------------------------------------------------------
Task = tuple[str, str, str, str | None, bool, str, int | None]


def _run_local(tasks: list[Task]) -> Iterator[tuple[int, bytes, int]]:
    for i, task in enumerate(tasks):
        data, n = score_partition(*task)
        yield i, data, n


NEEDS_DASK = "--engine dask needs Dask: pip install 'precimed[scale]' (or 'dask[distributed]')"


def _distributed() -> Any:
    """The `distributed` package, or ConfigError saying which extra to install (never an ImportError traceback)."""
    try:
        import distributed
    except ImportError:
        raise ConfigError(NEEDS_DASK) from None
    return distributed


@contextmanager
def _dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    Client = _distributed().Client  # noqa: N806 (the class)
    if scheduler is not None:
        try:
            client = Client(scheduler, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            detail = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise ConfigError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({detail})") from None
        with client:
            yield client
        return
    with local_cluster(workers) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


@contextmanager
def local_cluster(workers: int) -> Iterator[Any]:
    """A ``distributed.LocalCluster`` of ``workers`` single-threaded processes, quiet, without a dashboard.

    Dask starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's mmap threshold at
    128 KiB: every large array becomes an mmap and its page faults, and scoring ran 40% slower (measured with
    benchmarks/bulk_speed.py). The workers here keep glibc's default; their memory is bounded by one partition
    each (one task at a time), and the benchmark reports their peak.
    """
    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected at least 1 worker")
    import logging

    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.CRITICAL)
    with cluster:
        yield cluster


def _run_dask(tasks: list[Task], scheduler: str | None, workers: int) -> Iterator[tuple[int, bytes, int]]:
    distributed = _distributed()
    KilledWorker, as_completed = distributed.KilledWorker, distributed.as_completed  # noqa: N806 (a class)

    with _dask_client(scheduler, workers) as client:
        futures: list[Any] = [client.submit(score_partition, *task, pure=False) for task in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in as_completed(futures, loop=client.loop):
                i = index[future.key]
                try:
                    data, n = future.result()  # re-raises a worker's error here
                except KilledWorker:
                    raise DataError(f"{tasks[i][2]}: the Dask workers scoring this partition died (out of memory?); "
                                    "split it into smaller files or give the workers more memory") from None
                futures[i] = None  # the last reference: the worker forgets the result
                yield i, data, n
        finally:
            client.cancel([f for f in futures if f is not None])


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True, console=Console(stderr=True))


def predict_partitions(bundle_dir: Path | str, pattern: str | Path, out_dir: Path | str, *, engine: str = "dask",
                       scheduler: str | None = None, workers: int = 2, model: str | None = None,
                       allow_out_of_range: bool = False, progress: bool = True,
                       overwrite: bool = False, runtime: str = "auto") -> BulkResult:
    """``precimed predict BUNDLE --input 'folder/*.parquet' --output out/``: score every partition the pattern
    matches into ``out_dir/<stem>.parquet``, written atomically (every partition or none).

    ``engine="local"`` scores the partitions one after another in this process; ``engine="dask"`` runs one task per
    partition on a LocalCluster of ``workers`` processes, or on the running scheduler at ``scheduler`` (its workers
    must see the bundle and the input files at the same paths). The progress bar shows on a terminal only.
    ``runtime`` is the compiled path's (``auto``/``numpy``/``onnx``; see ``predict_frame``).
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if scheduler is not None and engine != "dask":
        raise ConfigError("--scheduler applies to --engine dask")
    if engine == "dask":
        _distributed()  # before anything is read or written
    out_dir = Path(out_dir)
    if out_dir.suffix.lower() in (".csv", ".parquet", ".json", ".jsonl"):
        raise ConfigError(f"--output {out_dir}: a partitioned input is scored into a folder (one file per "
                          "partition); give a folder, e.g. out/")
    sources = find_partitions(pattern)
    # a glob's data set is the folder it names ('data/*.parquet': data/): the output is neither in it nor holds it
    root = _pattern_root(os.path.expanduser(str(pattern))) if has_glob(pattern) else None
    check_outputs_apart({"--output": out_dir}, {"BUNDLE": bundle_dir, "--input": root})
    for src in sources:
        check_outputs_apart({"--output": out_dir}, {"--input": src})
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"{out_dir} already exists; choose another --output or pass --overwrite")
    bundle = load_bundle(bundle_dir)  # verified here once, so a bad bundle is one line before any worker starts
    name = bundle.model_named(model)
    if bundle.image_preprocessor is not None:
        raise ConfigError(f"{bundle_dir}: an imaging bundle scores images, not partitions of table rows")
    key = str(Path(bundle_dir).resolve())
    fingerprint = bundle_fingerprint(key)
    with _CACHE_LOCK:  # the local engine reuses the bundle just verified
        _CACHE.clear()
        _CACHE[(key, fingerprint)] = bundle
    threads = None if engine == "local" else 1
    tasks: list[Task] = [(key, fingerprint, str(src), name, allow_out_of_range, runtime, threads) for src in sources]
    runner: Iterable[tuple[int, bytes, int]] = (
        _run_local(tasks) if engine == "local" else _run_dask(tasks, scheduler, workers))
    rows = [0] * len(sources)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp, \
            _progress_bar(progress and sys.stderr.isatty()) as bar:
        task_id = bar.add_task(f"scoring with {name} ({engine})", total=len(sources)) if bar else None
        for i, data, n in runner:
            _write(tmp / f"{sources[i].stem}.parquet", data)
            rows[i] = n
            if bar:
                bar.advance(task_id)
    return BulkResult(out_dir, name, engine, [(src, out_dir / f"{src.stem}.parquet", n)
                                              for src, n in zip(sources, rows, strict=True)])


def _write(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:  # a fresh temporary folder: every name is new
        fh.write(data)

