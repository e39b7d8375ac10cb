"""Sequence risk models under the scikit-learn contract: GRU, LSTM, temporal CNN or Transformer.

`SequenceRiskModel(kind=..., task=...)` joins a sequence net (``precimed.models.sequence``), the task's
loss and the training loop through ``NetEnsembleEstimator``, the same machinery as the tabular
``NeuralRiskModel``: binary (BCE), multiclass (CE), regression (MSE) or survival (Cox partial
likelihood with a Breslow baseline for survival curves), and ensembles of k nets trained on k
validation splits.

X is a float32 array of shape (n, T, C + n_static): C sequence channels on a regular grid whose last
step is the prediction time (``SequencePreprocessor.transform``), followed by ``n_static`` static
features repeated over the T steps (``pack_static``). The bundle stores the nets' state_dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted

from precimed.errors import ConfigError, DataError
from precimed.models.nets import set_threads
from precimed.models.sequence import SEQUENCE_NETS, SequenceNet
from precimed.train.estimators import NetEnsembleEstimator

__all__ = ["KINDS", "SequenceRiskModel", "pack_static"]

KINDS = tuple(SEQUENCE_NETS)


def pack_static(sequences: np.ndarray, static: np.ndarray | None) -> np.ndarray:
    """(n, T, C) sequences and (n, S) static features as one (n, T, C + S) float32 array."""
    sequences = np.asarray(sequences, dtype=np.float32)
    if sequences.ndim != 3:
        raise DataError(f"sequences must be a 3-D array (patients, steps, channels); got shape {sequences.shape}")
    if static is None or np.asarray(static).shape[-1] == 0:
        return sequences
    static = np.asarray(static, dtype=np.float32)
    if static.ndim != 2 or len(static) != len(sequences):
        raise DataError(f"static features must be a 2-D array with one row per patient ({len(sequences)}); "
                        f"got shape {static.shape}")
    repeated = np.broadcast_to(static[:, None, :], (len(static), sequences.shape[1], static.shape[1]))
    return np.concatenate([sequences, repeated], axis=2)


class SequenceRiskModel(NetEnsembleEstimator):
    """A sequence net (kind gru / lstm / cnn / transformer) for a binary, multiclass, regression or
    survival task; y as for ``NeuralRiskModel`` (survival: an (n, 2) array [time, event]).

    Parameters
    ----------
    kind : "gru", "lstm", "cnn" (causal dilated temporal CNN) or "transformer".
    hidden, layers : width and depth of the sequence encoder.
    kernel_size : convolution width (cnn). heads : attention heads (transformer; divides hidden).
    head_hidden : hidden units of the head that joins the encoding with the static features (0: linear).
    n_static : how many of the last input channels are static features (see ``pack_static``).
    mask_channels : (start, stop) of the observation-mask channels, for the Transformer's key-padding
        mask of empty bins (``SequencePreprocessor.mask_channels_``); None: no bin is masked.
    The training parameters are those of ``NeuralRiskModel``.
    """

    def __init__(self, task: str = "binary", kind: str = "gru", hidden: int = 32, layers: int = 1,
                 dropout: float = 0.1, kernel_size: int = 3, heads: int = 2, head_hidden: int = 16,
                 n_static: int = 0, mask_channels: Sequence[int] | None = None, optimizer: str = "adamw",
                 lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 1e-4, batch_size: int = 64,
                 max_epochs: int = 200, patience: int = 20, lr_schedule: str = "none", val_fraction: float = 0.2,
                 class_weight: str | None = None, ensemble: int = 1, random_state: int = 0,
                 progress: bool = False) -> None:
        self.task = task
        self.kind = kind
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.kernel_size = kernel_size
        self.heads = heads
        self.head_hidden = head_hidden
        self.n_static = n_static
        self.mask_channels = mask_channels
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.lr_schedule = lr_schedule
        self.val_fraction = val_fraction
        self.class_weight = class_weight
        self.ensemble = ensemble
        self.random_state = random_state
        self.progress = progress

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is (patients, steps, channels)
        tags.input_tags.three_d_array = True
        return tags

    # ----- fitting -------------------------------------------------------------------------------
    def _check_X(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3:
            raise DataError(f"{type(self).__name__} needs a 3-D array (patients, steps, channels); got shape "
                            f"{X.shape}. Build it with SequencePreprocessor.transform and pack_static")
        if not np.isfinite(X).all():
            raise DataError("the sequence array holds NaN or inf; SequencePreprocessor.transform fills unknown "
                            "values, use its output")
        return X

    def _check_params(self, n_channels: int) -> None:
        if self.kind not in SEQUENCE_NETS:
            raise ConfigError(f"unknown sequence model kind {self.kind!r}; choose from {list(KINDS)}")
        if not 0 <= int(self.n_static) < n_channels:
            raise ConfigError(f"n_static={self.n_static} must leave at least one sequence channel of the "
                              f"{n_channels} input channels")
        if self.kind == "transformer" and self.hidden % self.heads:
            raise ConfigError(f"transformer: hidden={self.hidden} must be divisible by heads={self.heads}")
        if self.mask_channels is not None:
            start, stop = self.mask_channels
            if not 0 <= start < stop <= n_channels - self.n_static:
                raise ConfigError(f"mask_channels {tuple(self.mask_channels)} lie outside the "
                                  f"{n_channels - self.n_static} sequence channels")

    def fit(self, X: np.ndarray, y: np.ndarray) -> SequenceRiskModel:
        X = self._check_X(X)
        y = self._check_y(y)
        if len(X) != len(y):
            raise DataError(f"X has {len(X)} patients but y has {len(y)} rows")
        self._check_params(X.shape[2])
        set_threads(1)
        self.n_features_in_ = X.shape[2]
        self.n_steps_ = X.shape[1]
        return self._fit_nets(X, y)

    def _net_label(self) -> str:
        return str(self.kind)

    def _build_net(self) -> SequenceNet:
        n_static = int(self.n_static)
        common = dict(n_channels=self.n_features_in_ - n_static, n_static=n_static, n_outputs=self.n_outputs_,
                      hidden=self.hidden, layers=self.layers, dropout=self.dropout, head_hidden=self.head_hidden)
        if self.kind == "cnn":
            return SEQUENCE_NETS["cnn"](**common, kernel_size=self.kernel_size)
        if self.kind == "transformer":
            return SEQUENCE_NETS["transformer"](**common, heads=self.heads, mask_channels=self.mask_channels)
        return SEQUENCE_NETS[self.kind](**common)

    def _outputs(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "nets_")
        X = self._check_X(X)
        if X.shape[2] != self.n_features_in_:
            raise DataError(f"X has {X.shape[2]} channels; this model was fitted on {self.n_features_in_}")
        return super()._outputs(X)

    # ----- state ---------------------------------------------------------------------------------
    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self, "nets_")
        params = self.get_params()
        if params["mask_channels"] is not None:
            params["mask_channels"] = [int(c) for c in params["mask_channels"]]
        state, blobs = self._state(params, "nets.pt")
        state["n_steps"] = self.n_steps_
        return state, blobs

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> SequenceRiskModel:
        params = dict(state["params"])
        if params.get("mask_channels") is not None:
            params["mask_channels"] = tuple(params["mask_channels"])
        self = cls(**params)
        self.n_steps_ = state["n_steps"]
        return self._restore(state, blobs, "nets.pt")
