"""Differentially private training of the NeuralRiskModel's MLP with DP-SGD (Opacus).

``fit_private(model, X, y, epsilon=...)`` trains an *unfitted* :class:`NeuralRiskModel` (built as
usual, e.g. by the training workflow) with DP-SGD and returns it fitted: the same class, the same
``to_state`` / ``from_state``, so bundles save and load it unchanged. The privacy parameters are in
``model.privacy_`` (a :class:`PrivacyAccount`; ``.to_dict()`` for metrics.json and bundle metadata).

How: Opacus' ``PrivacyEngine.make_private_with_epsilon`` calibrates the Gaussian noise multiplier so
that `epochs` passes of Poisson-sampled batches (expected size ``model.batch_size``) with per-sample
gradients clipped to ``max_grad_norm`` spend at most (ε, δ); the accountant (RDP by default) reports
the ε actually spent at the end. δ defaults to min(1e-5, n^-1.1), below 1/n as it must be.

What the guarantee covers, and what it does not:
- It covers the network weights: record-level (ε, δ)-DP with respect to the rows of ``X``/``y``.
- Training runs a fixed number of epochs on all rows, without a validation split or early stopping
  (choosing the epoch on held-back private rows would leak outside the accounting); training losses
  are not stored (they are computed from private data without noise).
- It does *not* cover anything fitted on the same rows outside this function: the preprocessor's
  medians, means, scales and category lists are stored in the bundle as computed.
- Survival (Cox) is refused: the partial likelihood couples every row with its risk set, so a row's
  "per-sample gradient" does not bound its influence and DP-SGD's analysis does not apply.
  Binary, multiclass and regression are supported. Regression needs ``target_range`` (public bounds
  for y) because standardizing y by its mean and SD would release those statistics.
- Also refused: ``class_weight`` (needs private class counts), ``batch_norm`` (mixes rows within a
  batch), ``ensemble > 1`` (each member would spend the budget again).
- Noise comes from PyTorch's generator unless ``secure_mode=True`` (needs the ``torchcsprng``
  package); for a release, retrain with secure mode.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from precimed.errors import ConfigError, DataError
from precimed.models.nets import set_threads
from precimed.train.estimators import NeuralRiskModel
from precimed.train.loop import History

PRIVATE_TASKS = ("binary", "multiclass", "regression")
_OPTIMIZERS = {
    "sgd": lambda params, m: torch.optim.SGD(params, lr=m.lr, momentum=m.momentum, weight_decay=m.weight_decay),
    "adam": lambda params, m: torch.optim.Adam(params, lr=m.lr, weight_decay=m.weight_decay),
    "adamw": lambda params, m: torch.optim.AdamW(params, lr=m.lr, weight_decay=m.weight_decay),
    "adagrad": lambda params, m: torch.optim.Adagrad(params, lr=m.lr, weight_decay=m.weight_decay),
    "rmsprop": lambda params, m: torch.optim.RMSprop(params, lr=m.lr, momentum=m.momentum,
                                                     weight_decay=m.weight_decay),
}


@dataclass(frozen=True)
class PrivacyAccount:
    """The (ε, δ) guarantee of a privately trained model and how it was obtained."""

    epsilon: float
    delta: float
    epsilon_target: float
    max_grad_norm: float
    noise_multiplier: float
    epochs: int
    sample_rate: float
    expected_batch_size: int
    n_train: int
    steps: int
    accountant: str
    secure_mode: bool
    mechanism: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_delta(n: int) -> float:
    """min(1e-5, n^-1.1): a δ well below 1/n."""
    return float(min(1e-5, n ** -1.1))


def _opacus() -> Any:
    try:
        import opacus
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("private training needs Opacus: pip install 'precimed[private]'") from None
    return opacus


def _check(model: NeuralRiskModel, n: int, epsilon: float, delta: float, max_grad_norm: float, epochs: int,
           target_range: tuple[float, float] | None) -> None:
    if not isinstance(model, NeuralRiskModel):
        raise ConfigError(f"fit_private trains a NeuralRiskModel, got {type(model).__name__}")
    if model.task == "survival":
        raise ConfigError(
            "private training does not support survival (Cox) models: the partial likelihood couples each row "
            "with its risk set, so per-sample clipping does not bound a row's influence and DP-SGD's guarantee "
            "does not hold. Use a binary task at a fixed horizon (e.g. event within 5 years) instead"
        )
    if model.task not in PRIVATE_TASKS:
        raise ConfigError(f"private training supports tasks {list(PRIVATE_TASKS)}, got {model.task!r}")
    if model.ensemble != 1:
        raise ConfigError(f"private training fits one net (ensemble=1); ensemble={model.ensemble} would spend "
                          "the privacy budget once per member")
    if model.batch_norm:
        raise ConfigError("batch_norm mixes rows within a batch and is not compatible with DP-SGD; set it off")
    if model.class_weight is not None:
        raise ConfigError("class_weight needs class counts from the private data; not supported in private training")
    if model.optimizer not in _OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {model.optimizer!r}; expected one of {sorted(_OPTIMIZERS)}")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"epsilon must be a positive number, got {epsilon}")
    if not 0 < delta < 1 / n:
        raise ConfigError(f"delta must lie in (0, 1/n) = (0, {1 / n:.2e}) for n={n} rows, got {delta}")
    if not max_grad_norm > 0:
        raise ConfigError(f"max_grad_norm must be positive, got {max_grad_norm}")
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    if model.task == "regression":
        if target_range is None:
            raise ConfigError("private regression needs target_range=(low, high): public bounds of y (e.g. the "
                              "plausible range), used to scale y without reading its mean and SD from the data")
        low, high = target_range
        if not high > low:
            raise ConfigError(f"target_range must have high > low, got {target_range}")


def fit_private(model: NeuralRiskModel, X: np.ndarray, y: np.ndarray, *, epsilon: float,
                delta: float | None = None, max_grad_norm: float = 1.0, epochs: int | None = None,
                target_range: tuple[float, float] | None = None, accountant: str = "rdp",
                secure_mode: bool = False) -> NeuralRiskModel:
    """Fit `model` (an unfitted NeuralRiskModel) with DP-SGD at (ε, δ); return it with ``privacy_`` set.

    `epochs` defaults to ``model.max_epochs``; `batch_size`, `lr`, `optimizer`, `weight_decay`,
    `hidden`, `dropout`, `activation` and `random_state` come from the model.
    """
    opacus = _opacus()
    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    if n < 2:
        raise DataError(f"private training needs rows; got {n}")
    delta = default_delta(n) if delta is None else float(delta)
    epochs = int(model.max_epochs if epochs is None else epochs)
    _check(model, n, float(epsilon), delta, float(max_grad_norm), epochs, target_range)
    y = model._check_y(y)
    if not np.isfinite(X).all():
        raise DataError("the feature matrix holds NaN or inf; preprocess (impute) before training")
    set_threads(1)
    seed = int(model.random_state)
    model.n_features_in_ = X.shape[1]
    model.n_outputs_ = int(y.max()) + 1 if model.task == "multiclass" else 1
    if model.task == "regression":
        low, high = (float(v) for v in target_range)  # type: ignore[union-attr]
        model.y_mean_, model.y_scale_ = (low + high) / 2, (high - low) / 2
        y = np.clip(y, low, high)
    targets, _ = model._targets(y)
    loss_fn = model._loss(y)

    torch.manual_seed(seed)
    net = model._build_net()
    optimizer = _OPTIMIZERS[model.optimizer](net.parameters(), model)
    batch_size = min(int(model.batch_size), n)
    loader = DataLoader(TensorDataset(torch.from_numpy(X), *targets), batch_size=batch_size,
                        generator=torch.Generator().manual_seed(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # secure-RNG notice, full-backward-hook notice, alpha-range notice
        engine = opacus.PrivacyEngine(accountant=accountant, secure_mode=secure_mode)
        private_net, private_opt, private_loader = engine.make_private_with_epsilon(
            module=net, optimizer=optimizer, data_loader=loader, target_epsilon=float(epsilon),
            target_delta=delta, epochs=epochs, max_grad_norm=float(max_grad_norm), poisson_sampling=True,
            noise_generator=None if secure_mode else torch.Generator().manual_seed(seed + 1),
        )
        steps = 0
        for _ in range(epochs):
            private_net.train()
            for batch in private_loader:
                xb, *yb = batch
                private_opt.zero_grad()
                loss = loss_fn(private_net(xb), *yb)
                loss.backward()
                private_opt.step()  # an empty Poisson batch still takes a (noise-only) step
                steps += 1
        spent = float(engine.get_epsilon(delta))
        sample_rate = float(private_loader.sample_rate)
        private_net._close()  # removes Opacus' hooks; `net` is a plain MLP again
    for p in net.parameters():  # drop Opacus' per-parameter buffers
        p.grad = None
        for attr in ("grad_sample", "summed_grad", "_forward_counter", "_processed"):
            if hasattr(p, attr):
                delattr(p, attr)
    net.eval()
    model.nets_ = [net]
    model.histories_ = [History(train_loss=[], val_loss=[], best_epoch=epochs - 1)]
    model.privacy_ = PrivacyAccount(
        epsilon=spent, delta=delta, epsilon_target=float(epsilon), max_grad_norm=float(max_grad_norm),
        noise_multiplier=float(private_opt.noise_multiplier), epochs=epochs, sample_rate=sample_rate,
        expected_batch_size=int(round(sample_rate * n)), n_train=n, steps=steps, accountant=accountant,
        secure_mode=secure_mode,
        mechanism=f"DP-SGD with Poisson sampling (Opacus {opacus.__version__})",
    )
    return model
