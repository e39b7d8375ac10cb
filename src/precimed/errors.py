"""Exceptions raised by precimed.

PrecimedError
├── DataError             the input data breaks a contract; the user can fix the data
│   ├── SchemaError       missing/unexpected columns, wrong dtype, unknown category
│   └── ValueRangeError   values outside the declared plausible range
├── NotFittedError        transform/predict called before fit
├── ConfigError           invalid config file, dataset name or argument combination
├── ArtifactError         bundle missing, altered, or from an incompatible version
└── RuleError             guideline/rule file invalid or contradictory

The CLI catches PrecimedError (and nothing broader), prints one line and exits 2.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


class PrecimedError(Exception):
    """Base class of every error a user can fix."""


class DataError(PrecimedError, ValueError):
    """The input data breaks a contract; carries the column and a few example row keys."""

    def __init__(self, message: str, *, column: str | None = None, rows: Sequence[Hashable] = ()) -> None:
        super().__init__(message)
        self.column = column
        self.rows = tuple(rows)[:20]


class SchemaError(DataError):
    """Missing or unexpected columns, wrong dtype, unknown category."""


class ValueRangeError(DataError):
    """Values outside the declared plausible range."""


class NotFittedError(PrecimedError, AttributeError):
    """A transformer or model was used before fit."""


class ConfigError(PrecimedError, ValueError):
    """An invalid run config, dataset name or argument combination."""


class ArtifactError(PrecimedError):
    """A bundle is missing, altered, or from an incompatible version."""


class RuleError(PrecimedError):
    """A guideline or rule file is invalid or contradictory."""
