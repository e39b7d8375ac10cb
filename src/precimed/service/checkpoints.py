"""The audit chain's anchors outside the database: an append-only JSON-lines file of MAC'd records.

Each line is one record, MAC'd with the audit key (HMAC-SHA256, its own domain), numbered `n` = 1, 2, 3, … and
linked to the record before it by `prev` (that record's MAC), so a deleted or edited line breaks the file's own
chain even where the audit table still looks whole:

    genesis     {type, chain_id, at, key_id, first_seq, first_hash, legacy_seq}   the chain began here
    checkpoint  {type, chain_id, seq, head_hash, at}                              the table's head was this
    refusal     {type, at, reason}                                                the service refused to start

Appends hold an exclusive `flock` on the main file (one writer at a time across processes), are written with
one `write` under O_APPEND and fsync'd; the same line then goes to the mirror, if one is configured (another
volume, a mount of another host), so an attacker must reach both to rewrite history. Files are created 0600.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from precimed import jsonio
from precimed.service.db import to_json

if TYPE_CHECKING:
    from precimed.workflows.privacy import KeyMaterial

try:  # POSIX; elsewhere one process per registry is assumed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("precimed.service.audit")
DOMAIN = "precimed/audit/checkpoint/v1"
TAIL_BYTES = 8192


def sign(key: KeyMaterial, record: dict[str, Any]) -> str:
    """The MAC of a record (every field but `mac`, as canonical JSON)."""
    body = {k: v for k, v in record.items() if k != "mac"}
    return key.mac(DOMAIN, to_json(body).encode()).hex()


@dataclass
class Contents:
    """What the checkpoint files hold, checked: the genesis, valid checkpoints by seq, and each problem found."""

    genesis: dict[str, Any] | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    extra_genesis: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any] | None:
        """The checkpoint with the highest seq."""
        return max(self.checkpoints, key=lambda c: c["seq"], default=None)


class CheckpointStore:
    """The checkpoint file and its optional mirror."""

    def __init__(self, paths: Sequence[Path | str]) -> None:
        if not paths:
            raise ValueError("a checkpoint store needs at least one file")
        self.paths = tuple(Path(p) for p in paths)
        self._lock = threading.Lock()

    def append(self, key: KeyMaterial, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Append one MAC'd record to every file (fsync'd); returns it. OSError if the main file cannot be written."""
        with self._lock, _open_locked(self.paths[0], exclusive=True) as fd:
            last = _last_record(fd)
            record = {"type": kind, **fields, "n": int(last.get("n", 0)) + 1 if last else 1,
                      "prev": last.get("mac") if last else None}
            record["mac"] = sign(key, record)
            line = (to_json(record) + "\n").encode()
            _write_all(fd, line)
        for mirror in self.paths[1:]:
            try:
                with _open_locked(mirror, exclusive=True) as fd:
                    _write_all(fd, line)
            except OSError as exc:
                log.error("audit checkpoint mirror %s not written: %s", mirror, type(exc).__name__)
        return record

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's lock file (beside the main file) while a chain is opened, so two processes starting
        at once on a fresh registry cannot both begin a chain."""
        lock = self.paths[0].with_name(self.paths[0].name + ".lock")
        with _open_locked(lock, exclusive=True):
            yield

    def last_checkpoint(self, key: KeyMaterial) -> dict[str, Any] | None:
        """The main file's last record if it is a valid checkpoint (cheap: reads the tail only)."""
        path = self.paths[0]
        if not path.exists():
            return None
        with _open_locked(path, exclusive=False, create=False) as fd:
            record = _last_record(fd)
        if record and record.get("type") == "checkpoint" and isinstance(record.get("seq"), int) and \
                record.get("mac") == sign(key, record):
            return record
        return None

    def claimed_key(self) -> str | None:
        """The key id the first genesis record claims, read without its MAC (to name a wrong key as such)."""
        for path in self.paths:
            for text in _read_lines(path):
                try:
                    record = jsonio.loads_strict(text)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("type") == "genesis":
                    return str(record.get("key_id"))
        return None

    def examine(self, key: KeyMaterial) -> Contents:
        """Read every file, check each record's MAC and the files' own numbering and links."""
        out = Contents()
        seen: set[str] = set()
        for path in self.paths:
            for record in _check_file(path, key, out.problems):
                if record["mac"] in seen:
                    continue
                seen.add(record["mac"])
                _collect(out, record)
        if len(self.paths) > 1:
            _compare_mirrors(self.paths, out.problems)
        return out


# ----- reading ------------------------------------------------------------------------------------------------
def _check_file(path: Path, key: KeyMaterial, problems: list[str]) -> Iterator[dict[str, Any]]:
    """The valid records of one file, in order; problems (bad line, bad MAC, gap) are appended to `problems`."""
    lines = _read_lines(path)
    expected_n, prev = 1, None
    for number, text in enumerate(lines, 1):
        try:
            record = jsonio.loads_strict(text)
        except ValueError:
            problems.append(f"{path.name} line {number} is not a JSON record: the file was edited")
            continue
        if not isinstance(record, dict) or not isinstance(record.get("mac"), str):
            problems.append(f"{path.name} line {number} has no MAC: the file was edited")
            continue
        if sign(key, record) != record["mac"]:
            problems.append(f"{path.name} line {number} ({record.get('type')}) does not match its MAC: forged or "
                            "edited (or written with another key)")
            continue
        if record.get("n") != expected_n or record.get("prev") != prev:
            problems.append(f"{path.name} line {number}: record {record.get('n')} follows record {expected_n - 1} "
                            "out of order: records were deleted or reordered")
        expected_n, prev = int(record.get("n") or 0) + 1, record["mac"]
        yield record


def _collect(out: Contents, record: dict[str, Any]) -> None:
    kind = record.get("type")
    if kind == "genesis":
        if out.genesis is None:
            out.genesis = record
        elif record.get("chain_id") != out.genesis.get("chain_id"):
            out.extra_genesis.append(record)
    elif kind == "checkpoint" and isinstance(record.get("seq"), int) and isinstance(record.get("head_hash"), str):
        out.checkpoints.append(record)


def _compare_mirrors(paths: Sequence[Path], problems: list[str]) -> None:
    main = set(_read_lines(paths[0]))
    for mirror in paths[1:]:
        other = set(_read_lines(mirror))
        if main - other:
            problems.append(f"{mirror.name} lacks {len(main - other)} record(s) that {paths[0].name} holds")
        if other - main:
            problems.append(f"{paths[0].name} lacks {len(other - main)} record(s) that its mirror {mirror.name} "
                            "holds: lines were deleted from it")


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    with _open_locked(path, exclusive=False, create=False) as fd:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0) if size else b""
    return [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]


def _last_record(fd: int) -> dict[str, Any] | None:
    """The last line of an open file, parsed (None if the file is empty; {} if the line is unreadable)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    start = max(0, size - TAIL_BYTES)
    tail = os.pread(fd, size - start, start).decode("utf-8", errors="replace").rstrip("\n").rsplit("\n", 1)[-1]
    try:
        record = jsonio.loads_strict(tail)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


# ----- writing ------------------------------------------------------------------------------------------------
@contextmanager
def _open_locked(path: Path, *, exclusive: bool, create: bool = True) -> Iterator[int]:
    """An fd of `path` (created 0600 in append mode) under a shared or exclusive flock."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0) if exclusive else os.O_RDONLY
    fd = os.open(path, flags, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _write_all(fd: int, data: bytes) -> None:
    """One append of a whole line (terminating a torn previous line first), then fsync."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        data = b"\n" + data
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)
