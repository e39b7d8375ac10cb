"""Run one job in a separate process under limits: wall time, CPU time, address space, file size, concurrency.

Why: some jobs run content that a client uploaded, such as the run config inside a registered bundle that
``POST /v1/models/{name}/evaluate`` evaluates on the server. Inside the service's own process such a job
could hold the interpreter (a long computation in C keeps the GIL, so even SIGTERM waits) and starve every
other request. In a child process it cannot: the caller waits without holding the GIL, kills the child
when the wall time is up, and the kernel enforces the CPU, memory and file-size limits (``resource``).
A runner holds a fixed number of slots; a job that finds them all taken is refused at once (`JobBusy`)
instead of queueing behind a slow one.

Children are forked from a ``forkserver`` process that has imported the job's module once, so a job starts
in milliseconds without forking the (multi-threaded) caller. Errors a user can fix (`PrecimedError`) come
back as themselves; a child that goes over a limit raises `JobLimitExceeded`; any other failure raises
`JobFailed`. Each message is one line and names the limit or the error type.
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from precimed import errors
from precimed.errors import DataError, PrecimedError

GIB = 2**30
FORKSERVER_PRELOAD = ("precimed.workflows.evaluating",)
"""Modules the fork server imports once when it starts: one fork server serves every runner of a process."""


class JobBusy(PrecimedError):
    """Every slot of the runner is taken; try again later."""


class JobLimitExceeded(PrecimedError):
    """The job went over one of its limits and was stopped."""


class JobFailed(PrecimedError):
    """The job failed with an error that is not a PrecimedError, or its process died."""


@dataclass(frozen=True)
class Limits:
    """What one job may use; the child is stopped when it goes over any of them."""

    wall_seconds: float = 300.0
    cpu_seconds: int = 300
    memory_bytes: int = 8 * GIB
    file_bytes: int = 2 * GIB


def _set_limit(which: int, value: int) -> None:
    """Lower a resource limit (soft and hard) to `value`, never above the hard limit the process already has."""
    _, hard = resource.getrlimit(which)
    capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (capped, capped))


def _apply_limits(limits: Limits) -> None:
    """In the child: kernel limits, plus an alarm that ends it even if the parent is gone."""
    _set_limit(resource.RLIMIT_CORE, 0)
    _set_limit(resource.RLIMIT_AS, limits.memory_bytes)
    _set_limit(resource.RLIMIT_FSIZE, limits.file_bytes)
    cpu = max(1, math.ceil(limits.cpu_seconds))
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    cap = (lambda v: v) if hard == resource.RLIM_INFINITY else (lambda v: min(v, hard))
    resource.setrlimit(resource.RLIMIT_CPU, (cap(cpu), cap(cpu + 1)))  # SIGXCPU at the soft limit, then SIGKILL
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # default action: terminate, even inside C code
    signal.alarm(math.ceil(limits.wall_seconds) + 5)


def _child(conn: Connection, limits: Limits, function: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    """The child's whole life: set the limits, run the job, send back ("ok", result) or what went wrong."""
    try:
        _apply_limits(limits)
        message: tuple[str, Any] = ("ok", function(*args, **kwargs))
    except MemoryError:
        message = ("memory", None)
    except PrecimedError as exc:
        message = ("error", _portable(exc))
    except BaseException as exc:  # noqa: BLE001 (every other failure, by type only: its text may hold paths or data)
        message = ("failed", f"{type(exc).__name__} in the job")
    try:
        conn.send(message)
    except Exception as exc:  # noqa: BLE001 (a result or error that does not pickle)
        conn.send(("failed", f"the job's outcome could not be sent back ({type(exc).__name__})"))
    finally:
        conn.close()


def _portable(exc: PrecimedError) -> PrecimedError:
    """`exc` as its nearest class from precimed.errors, which rebuilds from its message alone.

    A subclass defined elsewhere may take other constructor arguments and then fails to unpickle in the parent;
    the classes of precimed.errors keep the status the entry points give it (ConfigError 422, ArtifactError 503).
    """
    cls = next(c for c in type(exc).__mro__ if c.__module__ == errors.__name__)
    out = cls(str(exc))
    if isinstance(exc, DataError) and isinstance(out, DataError):
        out.column, out.rows = exc.column, exc.rows
    return out


_SIGNALS = {signal.SIGXCPU: "CPU time", signal.SIGKILL: "CPU time or memory", signal.SIGXFSZ: "file size",
            signal.SIGALRM: "wall time"}


class LimitedRunner:
    """Runs jobs in child processes under `limits`, at most `slots` at a time."""

    def __init__(self, limits: Limits, *, slots: int = 1) -> None:
        self.limits = limits
        self._slots = threading.BoundedSemaphore(slots)

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in a child; return its result or raise (see the module docstring).

        `function` and its arguments must pickle (a module-level function and plain values).
        """
        if not self._slots.acquire(blocking=False):
            raise JobBusy("another job of this kind is running; try again when it has finished")
        try:
            return self._run(function, args, kwargs)
        finally:
            self._slots.release()

    def _run(self, function: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(FORKSERVER_PRELOAD))  # read when the fork server starts (once)
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(send, self.limits, function, args, kwargs), daemon=True)
        process.start()
        send.close()
        try:
            kind, payload = self._wait(receive)
        finally:
            receive.close()
            if process.is_alive():
                process.kill()
            process.join()
        if kind == "died":
            kind, payload = self._death(process.exitcode)
        return self._outcome(kind, payload)

    def _wait(self, receive: Connection) -> tuple[str, Any]:
        """The child's message, ("timeout", None) after the wall time, or ("died", None) if it ended silently."""
        if not receive.poll(self.limits.wall_seconds):
            return "timeout", None
        try:
            return receive.recv()
        except EOFError:
            return "died", None
        except Exception as exc:  # noqa: BLE001 (an outcome that does not unpickle here)
            return "failed", f"the job's outcome could not be read ({type(exc).__name__})"

    @staticmethod
    def _death(exitcode: int | None) -> tuple[str, Any]:
        """What a child that ended without a message died of."""
        if exitcode is not None and exitcode < 0 and -exitcode in _SIGNALS:
            return "limit", _SIGNALS[signal.Signals(-exitcode)]
        return "failed", f"the job's process ended with exit code {exitcode}"

    def _outcome(self, kind: str, payload: Any) -> Any:
        limits = self.limits
        if kind == "ok":
            return payload
        if kind == "error":
            raise payload
        if kind == "timeout":
            raise JobLimitExceeded(f"the job was stopped after {limits.wall_seconds:g} s of wall time")
        if kind == "memory":
            raise JobLimitExceeded(f"the job was stopped: it needed more than {limits.memory_bytes / GIB:g} GiB "
                                   "of memory")
        if kind == "limit":
            raise JobLimitExceeded(f"the job was stopped by its {payload} limit ({limits.cpu_seconds:g} s CPU, "
                                   f"{limits.memory_bytes / GIB:g} GiB memory, {limits.wall_seconds:g} s wall time)")
        raise JobFailed(f"the job failed: {payload}")


EVALUATIONS = LimitedRunner(Limits(), slots=1)
"""The runner of server-side evaluations of registered bundles (one at a time; see the evaluate route)."""


__all__ = ["EVALUATIONS", "FORKSERVER_PRELOAD", "JobBusy", "JobFailed", "JobLimitExceeded", "LimitedRunner", "Limits"]
