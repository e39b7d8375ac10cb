"""Seeded percentile bootstrap confidence intervals for any metric function over rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from precimed.errors import ConfigError, DataError

from .metrics import undefined_as_nan

__all__ = ["bootstrap_ci"]


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray], dict[str, float]],
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    strata: np.ndarray | None = None,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Point value and percentile bootstrap CI of each metric returned by ``metric_fn``.

    ``metric_fn(idx)`` evaluates the metrics on rows ``idx`` of an evaluation set of ``n`` rows.
    The point value is ``metric_fn(np.arange(n))``; each of the ``n_boot`` replicates draws n rows
    with replacement (within each stratum when ``strata`` is given, so every replicate keeps the
    stratum sizes, e.g. the number of events). Replicates run inside
    :func:`~precimed.evaluate.metrics.undefined_as_nan`: a metric undefined on a resample (one class
    only) is NaN there and left out of that metric's percentiles. Results depend only on ``seed``.

    Returns ``{metric: {"value": v, "ci_low": lo, "ci_high": hi}}`` with plain floats (NaN when a
    metric is undefined in every replicate).
    """
    n = int(n)
    if n < 1:
        raise ConfigError(f"n must be a positive number of rows, got {n}.")
    if int(n_boot) < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}.")
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}.")
    groups = _strata_groups(strata, n)

    point = {key: float(value) for key, value in metric_fn(np.arange(n)).items()}
    keys = list(point)
    replicates = np.full((int(n_boot), len(keys)), np.nan)
    rng = np.random.default_rng(seed)
    with undefined_as_nan():
        for b in range(int(n_boot)):
            idx = np.concatenate([rows[rng.integers(0, rows.size, rows.size)] for rows in groups])
            values = metric_fn(idx)
            replicates[b] = [float(values.get(key, np.nan)) for key in keys]

    tail = 100.0 * (1.0 - float(level)) / 2.0
    result: dict[str, dict[str, float]] = {}
    for j, key in enumerate(keys):
        column = replicates[:, j]
        column = column[~np.isnan(column)]
        if column.size:
            low, high = np.percentile(column, [tail, 100.0 - tail])
        else:
            low = high = np.nan
        result[key] = {"value": point[key], "ci_low": float(low), "ci_high": float(high)}
    return result


def _strata_groups(strata: np.ndarray | None, n: int) -> list[np.ndarray]:
    if strata is None:
        return [np.arange(n)]
    labels = np.asarray(strata)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DataError(
            f"strata must hold one label per row: expected {n} values, got shape {labels.shape}.",
            column="strata",
        )
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        rows = np.flatnonzero(np.isnan(labels))
        raise DataError(
            f"strata contains NaN in {rows.size} row(s); give every row a stratum.",
            column="strata",
            rows=rows.tolist(),
        )
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.ravel()
    return [np.flatnonzero(inverse == k) for k in range(int(inverse.max()) + 1)]
