"""Deep models under the scikit-learn contract: one estimator per tabular net, for every task.

`NeuralRiskModel(task=...)` joins the MLP, the task's loss and the training loop;
`ResidualRiskModel` does the same for the residual MLP with a linear (wide) skip path, which starts
as, and can stay, a linear / logistic / Cox regression. With `ensemble=k` either trains k nets on k
different validation splits and averages them, a cheap and reliable way to cut the variance that
small clinical cohorts give a single net.

`NetEnsembleEstimator` holds what every net estimator shares (targets, losses, the ensemble loop,
predictions, state, scikit-learn tags); `TabularNetEstimator` adds the tabular constructor, input
checks and state, so a new tabular net is one small class naming its module, blob and label.
`precimed.train.sequence.SequenceRiskModel` builds on `NetEnsembleEstimator` for sequence nets.

Fine-tuning (a cheaper update than retraining, for a new site or period): ``fit(X, y, init_state=(state,
blobs))`` starts every ensemble member from the matching member of a fitted model of the same class and
architecture (its ``to_state()``), keeps its output scale (regression mean and scale, the classes), trains on
the new rows with early stopping, and keeps a member's starting weights when no epoch beats them on its
validation rows. Only then does ``freeze`` apply: layer groups (``tabular_layer_groups``: ``hidden1``..
``hiddenK``, ``head``) whose parameters stay fixed, their dropout and batch-norm statistics too, so a frozen
layer is bit-identical after fine-tuning. Survival models refit the Breslow baseline on the new rows.

The scikit-learn kind follows the task: a classifier for binary / multiclass (``classes_``,
``predict`` gives labels), a regressor for regression; survival takes y as an (n, 2) array
[time, event] and ``predict`` gives the log-hazard ratio.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, ClassVar, Self, cast

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import Tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from precimed.errors import ConfigError, DataError
from precimed.models.baselines import (
    TASKS,
    check_class_weight,
    check_features,
    check_target,
    check_training_data,
    is_classification,
    task_score,
    task_tags,
)
from precimed.models.losses import bce_loss, ce_loss, cox_partial_nll, mse_loss
from precimed.models.nets import MLP, ResidualMLP, set_threads
from precimed.models.survival import breslow_cumulative_hazard, survival_at
from precimed.train.loop import History, TrainSettings, fit_net

__all__ = ["TASKS", "NetEnsembleEstimator", "NeuralRiskModel", "ResidualRiskModel", "TabularNetEstimator",
           "fit_linear_path", "tabular_layer_groups"]


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True)


class NetEnsembleEstimator(BaseEstimator):
    """What every net estimator shares: the task's targets and loss, the ensemble training loop,
    predictions (probabilities, values, Cox risk and Breslow survival) and the fitted state.

    Subclasses define ``__init__`` (the task and training parameters below plus their architecture),
    ``fit`` (check X, then ``_check_y`` and ``_fit_nets``), ``_build_net``, ``to_state`` and ``from_state``;
    optionally ``_start_net`` (starting weights fitted on a member's training rows before training).
    The scikit-learn kind and tags follow ``task`` (``precimed.models.baselines.task_tags``).
    """

    def __sklearn_tags__(self) -> Tags:
        return task_tags(super().__sklearn_tags__(), self.task)

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

    def _check_y(self, y: Any) -> np.ndarray:
        """The target as the nets train on it (class codes, floats or [time, event]); sets ``classes_``."""
        y, classes = check_target(y, self.task, where=type(self).__name__)
        if classes is not None:
            self.classes_ = classes
        elif hasattr(self, "classes_"):
            del self.classes_  # a refit for another task
        return y

    def _fit_nets(self, X: np.ndarray, y: np.ndarray, init: Sequence[dict[str, torch.Tensor]] | None = None) -> Any:
        """Train the ensemble on checked inputs X (float32, any shape with rows first) and targets y.

        ``init`` (fine-tuning) holds each member's starting weights; the caller has set ``n_outputs_`` (and for
        regression ``y_mean_`` / ``y_scale_``) from the model they come from.
        """
        check_class_weight(self.class_weight)
        if init is None:
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
                if init is None:
                    self._start_net(net, loss, xt[it], [t[it] for t in targets])
                    history = fit_net(net, loss, xt[it], [t[it] for t in targets], xt[iv],
                                      [t[iv] for t in targets], TrainSettings(seed=seed, **settings), on_epoch=advance)
                else:
                    history = self._fine_tune_net(net, init[member], loss, (xt[it], [t[it] for t in targets]),
                                                  (xt[iv], [t[iv] for t in targets]),
                                                  TrainSettings(seed=seed, **settings), advance)
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

    def _start_net(self, net: torch.nn.Module, loss: Any, x: torch.Tensor, targets: list[torch.Tensor]) -> None:
        """Set a freshly built member's starting weights from its training rows; by default keep them."""

    def _layer_groups(self, net: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
        """The net's layer groups by name, input side first (what ``freeze`` names); fine-tuning needs them."""
        raise NotImplementedError(f"{type(self).__name__} has no layer groups to fine-tune")

    def _frozen_modules(self, net: torch.nn.Module) -> list[torch.nn.Module]:
        """Fix the parameters of the groups ``self.freeze`` names; return their modules (kept in eval mode)."""
        groups = self._layer_groups(net)
        freeze = list(getattr(self, "freeze", ()) or ())
        unknown = [name for name in freeze if name not in groups]
        if unknown:
            raise ConfigError(f"{type(self).__name__}: cannot freeze {unknown}; this net's layers are {list(groups)}")
        if set(freeze) >= set(groups):
            raise ConfigError(f"{type(self).__name__}: freeze={freeze} leaves no layer to train; keep at least "
                              f"one of {list(groups)} trainable")
        modules = [m for name in freeze for m in groups[name]]
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)
        return modules

    def _fine_tune_net(self, net: torch.nn.Module, weights: dict[str, torch.Tensor], loss: Any,
                       train: tuple[torch.Tensor, list[torch.Tensor]], val: tuple[torch.Tensor, list[torch.Tensor]],
                       settings: TrainSettings, on_epoch: Any) -> History:
        """Train one member from ``weights`` with the frozen groups fixed; keep the starting weights when no
        epoch beats them on the validation rows (fine-tuning never ends worse there than not fine-tuning)."""
        net.load_state_dict(weights)
        frozen = self._frozen_modules(net)
        # fit_net puts the whole net in training mode each epoch: a frozen layer's dropout and batch-norm
        # statistics must stay as they were, so its modules are switched back to eval before every forward
        hooks = [m.register_forward_pre_hook(_stay_in_eval) for module in frozen for m in module.modules()]
        try:
            net.eval()
            with torch.no_grad():
                start_loss = float(loss(net(val[0]), *val[1]))
            history = fit_net(net, loss, train[0], train[1], val[0], val[1], settings, on_epoch=on_epoch)
        finally:
            for hook in hooks:
                hook.remove()
            for p in net.parameters():
                p.requires_grad_(True)
        if not history.val_loss or start_loss <= min(history.val_loss):
            net.load_state_dict(weights)
            history.best_epoch = -1  # the starting weights: no epoch improved on them
        net.eval()
        return history

    # ----- prediction ----------------------------------------------------------------------------
    def _outputs(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "nets_")
        set_threads(1)
        x = torch.as_tensor(np.asarray(X, dtype=np.float32))
        with torch.no_grad():
            return np.stack([net(x).numpy() for net in self.nets_])  # (members, n, outputs)

    @available_if(is_classification)
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (classification tasks only)."""
        out = self._outputs(X)
        if self.task == "binary":
            p = expit(out[..., 0]).mean(axis=0)
            return np.column_stack([1 - p, p])
        e = np.exp(out - out.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).mean(axis=0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels (classification), values (regression) or the log-hazard ratio (survival)."""
        if self.task == "regression":
            return self._outputs(X)[..., 0].mean(axis=0) * self.y_scale_ + self.y_mean_
        if self.task == "survival":
            return self.predict_risk(X)
        codes = self.predict_proba(X).argmax(axis=1)
        return self.classes_[codes]

    def predict_risk(self, X: np.ndarray) -> np.ndarray:
        """Log-hazard ratio: each member's scores averaged (Cox scores are defined up to a shift)."""
        out = self._outputs(X)[..., 0]
        return out.mean(axis=0)

    def predict_survival(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        return survival_at(self.predict_risk(X), times, self.base_times_, self.base_cumhaz_)

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy (classification), R² (regression) or Harrell's C (survival)."""
        return task_score(self, X, y, self.task)

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
        if self.task in ("binary", "multiclass"):
            state["classes"] = self.classes_.tolist()
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
        if self.task in ("binary", "multiclass"):  # states written before classes were saved hold codes 0..K-1
            default = np.arange(2 if self.task == "binary" else self.n_outputs_)
            self.classes_ = np.asarray(state.get("classes", default))
        if self.task == "regression":
            self.y_mean_, self.y_scale_ = state["y_mean"], state["y_scale"]
        if self.task == "survival":
            self.base_times_ = np.asarray(state["base_times"])
            self.base_cumhaz_ = np.asarray(state["base_cumhaz"])
        return self


class TabularNetEstimator(NetEnsembleEstimator):
    """A net on a 2-D feature matrix for binary (BCE), multiclass (CE), regression (MSE) or survival (Cox
    partial likelihood) tasks: the constructor, input checks, fit and state every tabular net shares.

    y: binary 0/1 (or any two labels); multiclass codes 0..K-1 (or any labels); regression floats;
    survival an (n, 2) array [time, event]. X: a dense, finite float matrix (NaN, inf and sparse input
    are refused with a DataError; impute first).

    A subclass names its net module (``_net_class``, built as ``(n_inputs, hidden, n_outputs, dropout,
    activation, batch_norm)``), the blob its weights are saved under (``_blob``) and its progress
    label (``_label``); nothing else.

    ``freeze`` (layer groups of ``tabular_layer_groups``) applies only when ``fit`` fine-tunes a fitted model
    (``init_state``); a model trained from scratch trains every layer.
    """

    _net_class: ClassVar[type[torch.nn.Module]]
    _blob: ClassVar[str]
    _label: ClassVar[str]

    def __init__(self, task: str = "binary", hidden: Sequence[int] = (64, 32), dropout: float = 0.1,
                 activation: str = "relu", batch_norm: bool = False, optimizer: str = "adamw",
                 lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 1e-4, batch_size: int = 256,
                 max_epochs: int = 200, patience: int = 20, lr_schedule: str = "none",
                 val_fraction: float = 0.2, class_weight: str | None = None, ensemble: int = 1,
                 random_state: int = 0, progress: bool = False, freeze: Sequence[str] = ()) -> None:
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
        self.freeze = freeze

    def fit(self, X: Any, y: Any, init_state: Any = None) -> Self:
        """Train on X, y; with ``init_state`` (a fitted model's ``to_state()`` pair) fine-tune its nets instead."""
        # two rows at least: the nets train on one part and early-stop on another
        X, y = check_training_data(self, X, y, task=self.task, dtype=np.float32, min_samples=2)
        y = self._check_y(y)
        if not X.flags.writeable:  # torch wants writable memory; a copy changes no value
            X = X.copy()
        set_threads(1)
        init = None if init_state is None else self._starting_weights(init_state, y)
        return self._fit_nets(X, y, init)

    def _starting_weights(self, init_state: Any, y: np.ndarray) -> list[dict[str, torch.Tensor]]:
        """Each member's weights from a fitted model's (state, blobs), checked against this model and the data;
        sets the output scale the nets were trained for (outputs, classes, regression mean and scale)."""
        where = f"{type(self).__name__}.fit(init_state=...)"
        if not (isinstance(init_state, tuple | list) and len(init_state) == 2 and isinstance(init_state[0], dict)
                and isinstance(init_state[1], dict)):
            raise ConfigError(f"{where}: init_state must be the (state, blobs) pair of a fitted "
                              f"{type(self).__name__}'s to_state()")
        state, blobs = init_state
        if self._blob not in blobs:
            raise ConfigError(f"{where}: init_state holds no {self._blob!r} weights (blobs: {sorted(blobs)}); "
                              f"fine-tune a fitted {type(self).__name__}")
        params = state.get("params", {})
        if params.get("task") != self.task:
            raise ConfigError(f"{where}: the starting model is a {params.get('task')} model, this one {self.task}")
        if state.get("n_features_in") != self.n_features_in_:
            raise DataError(f"{where}: the new data have {self.n_features_in_} encoded feature(s), the starting "
                            f"model takes {state.get('n_features_in')}; encode them with its preprocessor")
        weights = torch.load(io.BytesIO(blobs[self._blob]), weights_only=True)
        if len(weights) != self.ensemble:
            raise ConfigError(f"{where}: the starting model has {len(weights)} ensemble member(s), this one "
                              f"{self.ensemble}; fine-tune with ensemble={len(weights)}")
        self.n_outputs_ = int(state["n_outputs"])
        if self.task in ("binary", "multiclass"):
            self.classes_ = np.asarray(state.get("classes", np.arange(max(self.n_outputs_, 2))))
            if int(y.max()) >= len(self.classes_):
                raise DataError(f"{where}: the new outcome has class code {int(y.max())}; the starting model knows "
                                f"{len(self.classes_)} classes {self.classes_.tolist()}")
        if self.task == "regression":
            self.y_mean_, self.y_scale_ = float(state["y_mean"]), float(state["y_scale"])
        probe = self._build_net()
        for member, sd in enumerate(weights):
            own = probe.state_dict()
            shapes = {k: tuple(v.shape) for k, v in sd.items()}
            wrong = [k for k in own if shapes.get(k) != tuple(own[k].shape)] + [k for k in shapes if k not in own]
            if wrong:
                raise ConfigError(f"{where}: member {member}'s weights do not fit this net (layers {wrong[:5]}); "
                                  "fine-tune with the starting model's architecture settings")
        return list(weights)

    def _layer_groups(self, net: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
        return tabular_layer_groups(net)

    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "nets_")
        X = check_features(self, X, dtype=np.float32)
        return super()._outputs(X if X.flags.writeable else X.copy())

    def _net_label(self) -> str:
        return self._label

    def _build_net(self) -> torch.nn.Module:
        return self._net_class(self.n_features_in_, tuple(self.hidden), self.n_outputs_, self.dropout,
                               self.activation, self.batch_norm)

    # ----- state ---------------------------------------------------------------------------------
    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self, "nets_")
        params = self.get_params()
        params["hidden"] = list(params["hidden"])
        params["freeze"] = list(params["freeze"])
        return self._state(params, self._blob)

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        params = dict(state["params"])
        params["freeze"] = tuple(params.get("freeze", ()))  # absent from states written before fine-tuning
        return cls(**params)._restore(state, blobs, cls._blob)


class NeuralRiskModel(TabularNetEstimator):
    """MLP for binary (BCE), multiclass (CE), regression (MSE) or survival (Cox partial likelihood).

    y: binary 0/1; multiclass codes 0..K-1; regression floats; survival an (n, 2) array [time, event].
    Parameters and input checks: see ``TabularNetEstimator``.
    """

    _net_class = MLP
    _blob = "mlp.pt"
    _label = "mlp"


class ResidualRiskModel(TabularNetEstimator):
    """Residual MLP with a linear (wide) skip path, for the same tasks, targets and parameters as
    ``NeuralRiskModel``.

    The net's output is a linear function of the features (the wide path) plus a deep residual path
    whose last layer starts at zero (``precimed.models.nets.ResidualMLP``). Each ensemble member first
    fits the wide path alone on its training rows (``fit_linear_path``: the linear / logistic /
    multinomial / Cox regression, by L-BFGS), then trains the whole net with early stopping on its
    validation rows. Training thus starts from the fitted regression and moves away from it only as far
    as the validation loss rewards, so where the signal is linear the net is as good as the regression
    baseline, and where it is not the deep path adds what the regression misses.
    """

    _net_class = ResidualMLP
    _blob = "resmlp.pt"
    _label = "resmlp"

    def _start_net(self, net: torch.nn.Module, loss: Any, x: torch.Tensor, targets: list[torch.Tensor]) -> None:
        """Fit the wide path alone first: each member starts as the fitted linear model of its training rows."""
        fit_linear_path(cast(ResidualMLP, net), loss, x, targets, l2=self.weight_decay)


def fit_linear_path(net: ResidualMLP, loss: Any, x: torch.Tensor, targets: list[torch.Tensor], *,
                    l2: float = 1e-4, max_iter: int = 100) -> None:
    """Fit ``net.wide`` by L-BFGS on the task's loss (plus ``l2/2 * ||W||²``) with the deep path at zero.

    The deep path's head starts at zero, so the net's output is ``net.wide(x)``: this is a plain
    linear / logistic / multinomial / Cox regression, solved in a few dozen full-batch steps where
    first-order training of the whole net would need thousands on a small cohort.
    """
    wide = net.wide
    params = list(wide.parameters())
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss(wide(x), *targets) + 0.5 * l2 * wide.weight.pow(2).sum()
        value.backward()
        return value

    optimizer.step(closure)
    for p in params:
        p.grad = None


def tabular_layer_groups(net: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
    """A tabular net's layers by name, input side first: ``hidden1``..``hiddenK`` (one per hidden layer, with
    its batch norm, activation and dropout) and ``head``, the output layer. For the residual MLP ``hiddenI`` is
    residual block I and ``head`` holds both maps straight to the output: the deep path's last layer and the
    wide (linear) path, so fine-tuning the head alone refits a linear model on the inputs and the frozen deep
    features."""
    groups: dict[str, list[torch.nn.Module]] = {}
    if isinstance(net, ResidualMLP):
        groups = {f"hidden{i}": [block] for i, block in enumerate(net.blocks, start=1)}
        return groups | {"head": [net.head, net.wide]}
    if isinstance(net, MLP):
        for module in net.body:
            if isinstance(module, torch.nn.Linear):
                groups[f"hidden{len(groups) + 1}"] = []
            groups[f"hidden{len(groups)}"].append(module)
        return groups | {"head": [net.head]}
    raise ConfigError(f"no layer groups for {type(net).__name__}; fine-tuning knows MLP and ResidualMLP")


def _stay_in_eval(module: torch.nn.Module, _inputs: Any) -> None:
    """Forward pre-hook of a frozen layer: no dropout, no batch-norm statistics update."""
    module.training = False


def cox_partial_nll_2d(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Cox loss for a net with one output column."""
    return cox_partial_nll(risk.squeeze(-1), time, event)
