"""Deep models under the scikit-learn contract: one estimator for every tabular task.

`NeuralRiskModel(task=...)` joins the MLP, the task's loss and the training loop. With
`ensemble=k` it trains k nets on k different validation splits and averages them, a cheap and
reliable way to cut the variance that small clinical cohorts give a single net.

`NetEnsembleEstimator` holds what every net estimator shares (targets, losses, the ensemble loop,
predictions, state); `precimed.train.sequence.SequenceRiskModel` builds on it for sequence nets.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from precimed.errors import DataError
from precimed.models.losses import bce_loss, ce_loss, cox_partial_nll, mse_loss
from precimed.models.nets import MLP, set_threads
from precimed.models.survival import breslow_cumulative_hazard, survival_at
from precimed.train.loop import History, TrainSettings, fit_net

TASKS = ("binary", "multiclass", "regression", "survival")


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True)


class NetEnsembleEstimator(BaseEstimator):
    """What every net estimator shares: the task's targets and loss, the ensemble training loop,
    predictions (probabilities, values, Cox risk and Breslow survival) and the fitted state.

    Subclasses define ``__init__`` (the task and training parameters below plus their architecture),
    ``fit`` (check X, then ``_fit_nets``), ``_build_net``, ``to_state`` and ``from_state``.
    """

    # ----- fitting -------------------------------------------------------------------------------
    def _targets(self, y: np.ndarray) -> tuple[list[torch.Tensor], np.ndarray | None]:
        """Tensors the loss consumes, and the labels to stratify the validation split on."""
        if self.task == "survival":
            return [torch.as_tensor(y[:, 0], dtype=torch.float32),
                    torch.as_tensor(y[:, 1], dtype=torch.float32)], y[:, 1]
        if self.task == "regression":
            z = (y - self.y_mean_) / self.y_scale_
            return [torch.as_tensor(z, dtype=torch.float32)], None
        if self.task == "multiclass":
            return [torch.as_tensor(y, dtype=torch.long)], y
        return [torch.as_tensor(y, dtype=torch.float32)], y

    def _loss(self, y: np.ndarray) -> Any:
        if self.task == "survival":
            return cox_partial_nll_2d
        if self.task == "regression":
            return mse_loss
        if self.task == "multiclass":
            weight = None
            if self.class_weight == "balanced":
                counts = np.bincount(y.astype(int), minlength=self.n_outputs_)
                weight = torch.as_tensor(len(y) / (self.n_outputs_ * np.maximum(counts, 1)), dtype=torch.float32)
            return lambda out, t: ce_loss(out, t, weight)
        pos_weight = None
        if self.class_weight == "balanced":
            pos_weight = torch.tensor((len(y) - y.sum()) / max(y.sum(), 1), dtype=torch.float32)
        return lambda out, t: bce_loss(out, t, pos_weight)

    def _check_y(self, y: np.ndarray) -> np.ndarray:
        if self.task not in TASKS:
            raise DataError(f"unknown task {self.task!r}; expected one of {list(TASKS)}")
        y = np.asarray(y, dtype=float)
        if self.task == "survival":
            if y.ndim != 2 or y.shape[1] != 2:
                raise DataError(f"survival target must be an (n, 2) array of [time, event]; got shape {y.shape}")
            if y[:, 1].sum() == 0:
                raise DataError(f"no events among the {len(y)} training rows; a survival model cannot be fitted")
        elif self.task in ("binary", "multiclass"):
            classes = np.unique(y)
            if len(classes) < 2:
                raise DataError(f"the training outcome has a single class {classes.tolist()}; need at least two")
        return y

    def _fit_nets(self, X: np.ndarray, y: np.ndarray) -> Any:
        """Train the ensemble on checked inputs X (float32, any shape with rows first) and targets y."""
        self.n_outputs_ = int(y.max()) + 1 if self.task == "multiclass" else 1
        if self.task == "regression":
            self.y_mean_, self.y_scale_ = float(y.mean()), float(y.std() or 1.0)
        targets, strata = self._targets(y)
        loss = self._loss(y)
        settings = dict(optimizer=self.optimizer, lr=self.lr, momentum=self.momentum,
                        weight_decay=self.weight_decay, batch_size=self.batch_size, max_epochs=self.max_epochs,
                        patience=self.patience, lr_schedule=self.lr_schedule)
        xt = torch.from_numpy(X)
        self.nets_: list[torch.nn.Module] = []
        self.histories_: list[History] = []
        total = self.max_epochs * self.ensemble
        with _progress(self.progress) as bar:
            task_id = bar.add_task(f"training {self._net_label()} ({self.task})", total=total) if bar else None
            for member in range(self.ensemble):
                seed = self.random_state + member
                idx_tr, idx_va = train_test_split(np.arange(len(X)), test_size=self.val_fraction,
                                                  random_state=seed, stratify=strata)
                it, iv = torch.from_numpy(idx_tr), torch.from_numpy(idx_va)
                torch.manual_seed(seed)
                net = self._build_net()
                advance = (lambda _e: bar.advance(task_id)) if bar else None
                history = fit_net(net, loss, xt[it], [t[it] for t in targets], xt[iv], [t[iv] for t in targets],
                                  TrainSettings(seed=seed, **settings), on_epoch=advance)
                if bar:
                    bar.update(task_id, completed=(member + 1) * self.max_epochs)
                self.nets_.append(net)
                self.histories_.append(history)
        if self.task == "survival":
            risk = self.predict_risk(X)
            self.base_times_, self.base_cumhaz_ = breslow_cumulative_hazard(risk, y[:, 0], y[:, 1])
        return self

    def _net_label(self) -> str:
        return "net"

    def _build_net(self) -> torch.nn.Module:
        raise NotImplementedError

    # ----- prediction ----------------------------------------------------------------------------
    def _outputs(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "nets_")
        set_threads(1)
        x = torch.as_tensor(np.asarray(X, dtype=np.float32))
        with torch.no_grad():
            return np.stack([net(x).numpy() for net in self.nets_])  # (members, n, outputs)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = self._outputs(X)
        if self.task == "binary":
            p = expit(out[..., 0]).mean(axis=0)
            return np.column_stack([1 - p, p])
        if self.task == "multiclass":
            e = np.exp(out - out.max(axis=-1, keepdims=True))
            return (e / e.sum(axis=-1, keepdims=True)).mean(axis=0)
        raise DataError(f"predict_proba is for classification; this model's task is {self.task}")

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return self._outputs(X)[..., 0].mean(axis=0) * self.y_scale_ + self.y_mean_
        if self.task == "survival":
            return self.predict_risk(X)
        return self.predict_proba(X).argmax(axis=1)

    def predict_risk(self, X: np.ndarray) -> np.ndarray:
        """Log-hazard ratio: each member's scores averaged (Cox scores are defined up to a shift)."""
        out = self._outputs(X)[..., 0]
        return out.mean(axis=0)

    def predict_survival(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        return survival_at(self.predict_risk(X), times, self.base_times_, self.base_cumhaz_)

    # ----- state ---------------------------------------------------------------------------------
    def _state(self, params: dict[str, Any], blob: str) -> tuple[dict, dict[str, bytes]]:
        """The fitted state shared by every net estimator: JSON data and the nets' state_dicts."""
        check_is_fitted(self, "nets_")
        state: dict[str, Any] = {
            "params": params,
            "n_features_in": self.n_features_in_,
            "n_outputs": self.n_outputs_,
            "best_epochs": [h.best_epoch for h in self.histories_],
            "history": [{"train_loss": h.train_loss, "val_loss": h.val_loss} for h in self.histories_],
        }
        if self.task == "regression":
            state |= {"y_mean": self.y_mean_, "y_scale": self.y_scale_}
        if self.task == "survival":
            state |= {"base_times": self.base_times_.tolist(), "base_cumhaz": self.base_cumhaz_.tolist()}
        buffer = io.BytesIO()
        torch.save([net.state_dict() for net in self.nets_], buffer)
        return state, {blob: buffer.getvalue()}

    def _restore(self, state: dict, blobs: dict[str, bytes], blob: str) -> Any:
        """Set the fitted state written by ``_state`` on a freshly constructed estimator."""
        self.n_features_in_ = state["n_features_in"]
        self.n_outputs_ = state["n_outputs"]
        weights = torch.load(io.BytesIO(blobs[blob]), weights_only=True)
        self.nets_ = []
        for sd in weights:
            net = self._build_net()
            net.load_state_dict(sd)
            net.eval()
            self.nets_.append(net)
        self.histories_ = [History(h["train_loss"], h["val_loss"], b)
                           for h, b in zip(state["history"], state["best_epochs"], strict=True)]
        if self.task == "regression":
            self.y_mean_, self.y_scale_ = state["y_mean"], state["y_scale"]
        if self.task == "survival":
            self.base_times_ = np.asarray(state["base_times"])
            self.base_cumhaz_ = np.asarray(state["base_cumhaz"])
        return self


class NeuralRiskModel(NetEnsembleEstimator):
    """MLP for binary (BCE), multiclass (CE), regression (MSE) or survival (Cox partial likelihood).

    y: binary 0/1; multiclass codes 0..K-1; regression floats; survival an (n, 2) array [time, event].
    """

    def __init__(self, task: str = "binary", hidden: Sequence[int] = (64, 32), dropout: float = 0.1,
                 activation: str = "relu", batch_norm: bool = False, optimizer: str = "adamw",
                 lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 1e-4, batch_size: int = 256,
                 max_epochs: int = 200, patience: int = 20, lr_schedule: str = "none",
                 val_fraction: float = 0.2, class_weight: str | None = None, ensemble: int = 1,
                 random_state: int = 0, progress: bool = False) -> None:
        self.task = task
        self.hidden = hidden
        self.dropout = dropout
        self.activation = activation
        self.batch_norm = batch_norm
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

    def fit(self, X: np.ndarray, y: np.ndarray) -> NeuralRiskModel:
        X = np.asarray(X, dtype=np.float32)
        y = self._check_y(y)
        if not np.isfinite(X).all():
            raise DataError("the feature matrix holds NaN or inf; preprocess (impute) before training")
        set_threads(1)
        self.n_features_in_ = X.shape[1]
        return self._fit_nets(X, y)

    def _net_label(self) -> str:
        return "mlp"

    def _build_net(self) -> MLP:
        return MLP(self.n_features_in_, tuple(self.hidden), self.n_outputs_, self.dropout, self.activation,
                   self.batch_norm)

    # ----- state ---------------------------------------------------------------------------------
    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self, "nets_")
        params = self.get_params()
        params["hidden"] = list(params["hidden"])
        return self._state(params, "mlp.pt")

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> NeuralRiskModel:
        return cls(**state["params"])._restore(state, blobs, "mlp.pt")


def cox_partial_nll_2d(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Cox loss for a net with one output column."""
    return cox_partial_nll(risk.squeeze(-1), time, event)
