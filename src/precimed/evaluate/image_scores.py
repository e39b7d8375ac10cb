"""Scoring image models on plain arrays, with patients (not slices) as the unit of resampling.

Slices of one patient are correlated: a bootstrap over slices would pretend there are hundreds of independent
samples when there are five patients. Every confidence interval here resamples patients (a cluster
bootstrap through :func:`~precimed.evaluate.bootstrap.bootstrap_ci`), and every paired difference ``a - b``
uses the same resampled patients for both models.

- :func:`score_slice_classifiers`: AUROC, AUPRC and Brier score of slice-level probabilities ("lesion present").
- :func:`score_segmenters`: mean Dice over cases (each case's Dice over all its voxels), its spread (SD, min,
  max) and a bootstrap CI of the mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from precimed.errors import DataError
from precimed.evaluate.bootstrap import bootstrap_ci

__all__ = ["score_segmenters", "score_slice_classifiers"]


def _rows_by_group(groups: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    names, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return names, [np.flatnonzero(codes == k) for k in range(len(names))]


def _classifier_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if len(np.unique(y)) < 2:
        return {"auroc": float("nan"), "auprc": float("nan"), "brier": float(brier_score_loss(y, p))}
    return {"auroc": float(roc_auc_score(y, p)), "auprc": float(average_precision_score(y, p)),
            "brier": float(brier_score_loss(y, p))}


def score_slice_classifiers(probabilities: Mapping[str, np.ndarray], y: np.ndarray, groups: np.ndarray, *,
                            comparisons: Sequence[tuple[str, str]] = (), n_boot: int = 1000, level: float = 0.95,
                            seed: int = 0) -> tuple[dict, dict]:
    """Each model's slice-level metrics with patient-bootstrap CIs, and paired differences.

    ``probabilities[name]`` is (N,) P(lesion present) per slice, ``y`` (N,) 0/1 and ``groups`` (N,) the patient of
    each slice. Returns ``(results, comparisons)``: ``results[name][metric] = {"value", "ci_low", "ci_high"}``
    (plus ``n_slices``, ``n_positive``, ``n_patients``); ``comparisons["a - b"][metric]`` likewise.
    """
    y = np.asarray(y, dtype=int)
    if y.ndim != 1 or len(y) == 0:
        raise DataError(f"slice labels must be a non-empty 1-D array, got shape {y.shape}")
    for name, p in probabilities.items():
        if np.asarray(p).shape != y.shape:
            raise DataError(f"model {name!r}: {np.asarray(p).shape[0] if np.ndim(p) else 0} probabilities for "
                            f"{len(y)} slices")
    _, rows = _rows_by_group(groups)
    n_boot = max(int(n_boot), 1)

    def expand(idx: np.ndarray) -> np.ndarray:
        return np.concatenate([rows[i] for i in idx])

    results: dict[str, dict] = {}
    for name, p in probabilities.items():
        p = np.asarray(p, dtype=float)
        ci = bootstrap_ci(lambda idx, p=p: _classifier_metrics(y[expand(idx)], p[expand(idx)]), len(rows),
                          n_boot=n_boot, seed=seed, level=level)
        results[name] = ci | {"n_slices": int(len(y)), "n_positive": int(y.sum()), "n_patients": len(rows)}
    diffs: dict[str, dict] = {}
    for a, b in comparisons:
        pa, pb = np.asarray(probabilities[a], dtype=float), np.asarray(probabilities[b], dtype=float)

        def delta(idx: np.ndarray, pa: np.ndarray = pa, pb: np.ndarray = pb) -> dict[str, float]:
            r = expand(idx)
            ma, mb = _classifier_metrics(y[r], pa[r]), _classifier_metrics(y[r], pb[r])
            return {k: ma[k] - mb[k] for k in ma}
        diffs[f"{a} - {b}"] = bootstrap_ci(delta, len(rows), n_boot=n_boot, seed=seed, level=level)
    return results, diffs


def score_segmenters(dice_by_case: Mapping[str, Mapping[str, float]], *,
                     comparisons: Sequence[tuple[str, str]] = (), n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> tuple[dict, dict]:
    """Mean Dice over cases with a case-bootstrap CI, its spread, and paired differences of the mean.

    ``dice_by_case[name][case]`` is the Dice of that model on that case (over all the case's voxels). Every
    model must be scored on the same cases.
    """
    names = list(dice_by_case)
    if not names:
        return {}, {}
    cases = sorted(dice_by_case[names[0]])
    for name in names:
        if sorted(dice_by_case[name]) != cases:
            raise DataError(f"model {name!r} was scored on other cases than {names[0]!r}")
    table = {name: np.array([dice_by_case[name][c] for c in cases], dtype=float) for name in names}
    n_boot = max(int(n_boot), 1)
    results: dict[str, dict] = {}
    for name, values in table.items():
        ci = bootstrap_ci(lambda idx, v=values: {"dice": float(np.mean(v[idx]))}, len(cases), n_boot=n_boot,
                          seed=seed, level=level)
        results[name] = ci | {"dice_sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                              "dice_min": float(values.min()), "dice_max": float(values.max()),
                              "per_case": {c: float(v) for c, v in zip(cases, values, strict=True)},
                              "n_cases": len(cases)}
    diffs = {f"{a} - {b}": bootstrap_ci(lambda idx, va=table[a], vb=table[b]: {"dice": float(np.mean(va[idx] -
                                                                                                   vb[idx]))},
                                        len(cases), n_boot=n_boot, seed=seed, level=level)
             for a, b in comparisons}
    return results, diffs
