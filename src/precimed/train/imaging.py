"""Image estimators under the scikit-learn contract: a slice classifier and a U-Net segmenter, with fine-tuning.

``ImageClassifier`` predicts "lesion present" per 2-D (or 2.5-D) slice with ``SmallResNet``, joined with
tabular features (the fusion net) when ``fit`` is given them. ``ImageSegmenter`` predicts a lesion
probability per pixel with MONAI's U-Net trained on Dice + cross-entropy. Both:

- split an inner validation set BY GROUP (patient) when groups are given, never by slice, and stop early
  on its loss, restoring the best weights (``precimed.train.loop.EarlyStopping``);
- train with the flat-buffer optimizers of ``precimed.train.optim`` over index permutations of
  in-memory tensors (no DataLoader: at these sizes it costs more than the step), on one torch thread;
- apply ``augment`` (a callable ``augment(images, masks, rng=...) -> (images, masks)``, e.g.
  ``precimed.preprocess.images.Augment``) to training batches only; the classifier passes ``masks=None``;
- pretrain then fine-tune: ``fit(..., init_state=(state, blobs))`` starts from the weights of a fitted
  estimator of the same class; only then do ``freeze`` (parameter groups kept fixed, their batch-norm
  statistics too) and ``backbone_lr`` (a smaller learning rate for the unfrozen backbone) apply. The
  groups are those of ``precimed.models.imaging.layer_groups``.

The loop here is the image version of ``precimed.train.loop.fit_net``: that one trains on one input
tensor without augmentation and with one learning rate; images need batched validation, augmentation,
a second input (tabular features) and parameter groups.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GroupShuffleSplit, train_test_split
from torch import Tensor, nn

from precimed.errors import ConfigError, DataError, NotFittedError
from precimed.models.imaging import SmallResNet, UNet2D, layer_groups, unet
from precimed.models.losses import bce_loss
from precimed.models.nets import set_threads
from precimed.train.estimators import _progress
from precimed.train.loop import EarlyStopping, History
from precimed.train.optim import FlatOptimizer, unflatten_parameters

__all__ = ["ImageClassifier", "ImageSegmenter", "check_images", "check_masks", "dice_ce_loss"]

Augment = Callable[..., tuple[Any, Any]]
THRESHOLDS = np.round(np.arange(0.1, 0.91, 0.05), 2)  # candidate segmentation thresholds tuned on validation
MAX_LESION_WEIGHT = 100.0  # cap of the "balanced" lesion class weight (tiny lesions would otherwise dominate)


# ----- input checks --------------------------------------------------------------------------------------
def check_images(X: Any, *, where: str, channels: int | None = None) -> np.ndarray:
    """X as a writable float32 (N, C, H, W) array of finite values, else a DataError naming the shape."""
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: images must be numeric arrays (N, C, H, W); {exc}") from exc
    if X.ndim != 4 or X.shape[0] < 1:
        raise DataError(f"{where}: images must be a 4-D array (slices, channels, height, width); "
                        f"got shape {X.shape}")
    if channels is not None and X.shape[1] != channels:
        raise DataError(f"{where}: the model was fitted on images with {channels} channel(s); got shape {X.shape} "
                        f"with {X.shape[1]}")
    bad = ~np.isfinite(X)
    if bad.any():
        slices = np.flatnonzero(bad.any(axis=(1, 2, 3)))
        raise DataError(f"{where}: images hold {int(bad.sum())} NaN/inf value(s) in {slices.size} slice(s) "
                        f"(first: {slices[:5].tolist()}); expected finite intensities", rows=slices.tolist())
    return X if X.flags.writeable and X.flags.c_contiguous else np.ascontiguousarray(X).copy()


def check_masks(masks: Any, X: np.ndarray, *, where: str) -> np.ndarray:
    """Masks as uint8 (N, H, W) of 0/1 matching the images X (N, C, H, W)."""
    masks = np.asarray(masks)
    expected = (X.shape[0], X.shape[2], X.shape[3])
    if masks.shape != expected:
        raise DataError(f"{where}: masks must have shape (slices, height, width) = {expected} to match the images "
                        f"{X.shape}; got {masks.shape}")
    values = np.unique(masks)
    if not np.isin(values, (0, 1)).all():
        raise DataError(f"{where}: masks must hold 0 (background) and 1 (lesion) only; got values "
                        f"{values[:10].tolist()}")
    return masks.astype(np.uint8)


def _check_rows(values: Any, n: int, *, name: str, where: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or len(values) != n:
        raise DataError(f"{where}: {name} must hold one value per slice ({n}); got shape {values.shape}", column=name)
    return values


def _check_tabular(tabular: Any, n: int, *, where: str, n_features: int | None = None) -> np.ndarray | None:
    if tabular is None:
        if n_features:
            raise DataError(f"{where}: the model was fitted with {n_features} tabular feature(s) beside the images; "
                            "pass tabular=")
        return None
    try:
        tabular = np.asarray(tabular, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: tabular features must be numeric; {exc}") from exc
    if tabular.ndim != 2 or len(tabular) != n:
        raise DataError(f"{where}: tabular features must be a 2-D array with one row per slice ({n}); "
                        f"got shape {tabular.shape}")
    if n_features is not None and tabular.shape[1] != n_features:
        raise DataError(f"{where}: the model was fitted with {n_features} tabular feature(s); got "
                        f"{tabular.shape[1]}")
    if not np.isfinite(tabular).all():
        rows = np.flatnonzero(~np.isfinite(tabular).all(axis=1))
        raise DataError(f"{where}: tabular features hold NaN/inf in {rows.size} row(s); impute them first",
                        rows=rows.tolist())
    return np.ascontiguousarray(tabular).copy()


# ----- shared estimator machinery ------------------------------------------------------------------------
class _ImageNetEstimator(BaseEstimator):
    """What both image estimators share: the validation split, fine-tuning set-up, the training loop, state."""

    _blob = ""

    def _build_net(self) -> nn.Module:
        raise NotImplementedError

    def _forward(self, net: nn.Module, inputs: Sequence[Tensor]) -> Tensor:
        return net(inputs[0])

    def _augment_batch(self, inputs: list[Tensor], target: Tensor, rng: np.random.Generator
                       ) -> tuple[list[Tensor], Tensor]:
        return inputs, target

    def _require_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    # ---- splitting
    def _split(self, n: int, groups: np.ndarray | None, strata: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation row indices: by group when groups are given, else stratified by slice."""
        where = type(self).__name__
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ConfigError(f"{where}: val_fraction must lie strictly between 0 and 1; got {self.val_fraction!r}")
        rows = np.arange(n)
        if groups is not None:
            if len(np.unique(groups)) < 2:
                raise DataError(f"{where}: the slices come from {len(np.unique(groups))} patient(s); an inner "
                                "validation split by patient needs at least two", column="groups")
            first = None
            for attempt in range(20):  # prefer a split whose training part holds both classes
                splitter = GroupShuffleSplit(n_splits=1, test_size=self.val_fraction,
                                             random_state=self.random_state + attempt)
                tr, va = next(splitter.split(rows, groups=groups))
                first = first or (tr, va)
                if strata is None or len(np.unique(strata[tr])) == len(np.unique(strata)):
                    return tr, va
            return first  # type: ignore[return-value]
        if n < 2:
            raise DataError(f"{where}: need at least two slices to train and validate; got {n}")
        stratify = strata if strata is not None and np.bincount(strata.astype(int)).min() >= 2 else None
        tr, va = train_test_split(rows, test_size=self.val_fraction, random_state=self.random_state,
                                  stratify=stratify)
        return np.sort(tr), np.sort(va)

    # ---- fine-tuning
    def _load_init(self, net: nn.Module, init_state: Any) -> None:
        """Load the weights of a fitted estimator's (state, blobs) into `net`, naming any layer that differs."""
        where = type(self).__name__
        if not (isinstance(init_state, tuple | list) and len(init_state) == 2 and isinstance(init_state[1], dict)):
            raise ConfigError(f"{where}: init_state must be the (state, blobs) pair of a fitted {where}'s "
                              "to_state()")
        blobs = init_state[1]
        if self._blob not in blobs:
            raise ConfigError(f"{where}: init_state holds no {self._blob!r} weights (blobs: {sorted(blobs)}); "
                              f"pretrain with {where}")
        weights = torch.load(io.BytesIO(blobs[self._blob]), weights_only=True)
        own = net.state_dict()
        missing = [k for k in own if k not in weights]
        extra = [k for k in weights if k not in own]
        if missing or extra:
            raise ConfigError(f"{where}: the pretrained weights do not fit this net: layers missing from them "
                              f"{missing[:5]}, layers they have that this net lacks {extra[:5]}; use the same "
                              "architecture settings as the pretrained model")
        for key, value in own.items():
            if tuple(weights[key].shape) != tuple(value.shape):
                raise ConfigError(f"{where}: the pretrained weights do not fit this net: layer {key!r} has shape "
                                  f"{tuple(weights[key].shape)} in the pretrained model and {tuple(value.shape)} "
                                  "here; use the same architecture settings and input channels")
        net.load_state_dict(weights)

    def _frozen_modules(self, net: nn.Module) -> list[nn.Module]:
        groups = layer_groups(net)
        unknown = [name for name in self.freeze if name not in groups or name == "head"]
        if unknown:
            raise ConfigError(f"{type(self).__name__}: cannot freeze {unknown}; expected some of "
                              f"{[g for g in groups if g != 'head']}")
        modules = [m for name in self.freeze for m in groups[name]]
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)
        return modules

    def _optimizers(self, net: nn.Module, fine_tune: bool) -> list[FlatOptimizer]:
        """One flat optimizer, or two (backbone at ``backbone_lr``, the rest at ``lr``) when fine-tuning."""
        settings = dict(weight_decay=self.weight_decay, momentum=0.9 if self.optimizer in ("sgd", "rmsprop") else 0.0)
        if self.optimizer not in FlatOptimizer.RULES:
            raise ConfigError(f"{type(self).__name__}: unknown optimizer {self.optimizer!r}; expected one of "
                              f"{list(FlatOptimizer.RULES)}")
        trainable = [p for p in net.parameters() if p.requires_grad]
        if not trainable:
            raise ConfigError(f"{type(self).__name__}: freeze={list(self.freeze)} leaves no parameter to train")
        if not fine_tune or self.backbone_lr is None:
            return [FlatOptimizer(net, self.optimizer, lr=self.lr, **settings)]
        backbone_ids = {id(p) for m in layer_groups(net)["backbone"] for p in m.parameters()}
        backbone = [p for p in trainable if id(p) in backbone_ids]
        rest = [p for p in trainable if id(p) not in backbone_ids]
        return [FlatOptimizer(nn.ParameterList(params), self.optimizer, lr=lr, **settings)
                for params, lr in ((backbone, self.backbone_lr), (rest, self.lr)) if params]

    # ---- the loop
    def _train(self, net: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: list[Tensor],
               target: Tensor, idx_tr: np.ndarray, idx_va: np.ndarray, init_state: Any) -> History:
        """Train `net` on rows idx_tr, early-stopping on the loss of rows idx_va; the best weights are restored."""
        fine_tune = init_state is not None
        if fine_tune:
            self._load_init(net, init_state)
        frozen = self._frozen_modules(net) if fine_tune else []
        optimizers = self._optimizers(net, fine_tune)
        rng = np.random.default_rng(self.random_state)
        generator = torch.Generator().manual_seed(self.random_state)
        stopper = EarlyStopping(self.patience)
        history = History()
        tr, va = torch.from_numpy(idx_tr), torch.from_numpy(idx_va)
        n, bs = len(tr), int(self.batch_size)
        start = time.perf_counter()
        with _progress(self.progress and sys.stderr.isatty()) as bar:
            task = bar.add_task(f"training {type(self).__name__}", total=self.max_epochs) if bar else None
            for epoch in range(self.max_epochs):
                net.train()
                for module in frozen:
                    module.eval()
                order = tr[torch.randperm(n, generator=generator)]
                total = 0.0
                for lo in range(0, n, bs):
                    rows = order[lo:lo + bs]
                    if len(rows) < 2 < n:  # a batch of one breaks batch norm and says little
                        continue
                    batch, y = self._augment_batch([x[rows] for x in inputs], target[rows], rng)
                    for opt in optimizers:
                        opt.zero_grad()
                    loss = loss_fn(self._forward(net, batch), y)
                    loss.backward()
                    for opt in optimizers:
                        opt.step()
                    total += loss.item() * len(rows)
                history.train_loss.append(total / n)
                val_loss = self._eval_loss(net, loss_fn, inputs, target, va)
                history.val_loss.append(val_loss)
                if bar:
                    bar.advance(task)
                if stopper.step(epoch, val_loss, net):
                    break
        unflatten_parameters(net)
        if stopper.best_state is not None:
            net.load_state_dict(stopper.best_state)
        for p in net.parameters():
            p.requires_grad_(True)
        net.eval()
        history.best_epoch = stopper.best_epoch
        history.seconds = time.perf_counter() - start
        return history

    def _eval_loss(self, net: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: list[Tensor],
                   target: Tensor, rows: Tensor) -> float:
        net.eval()
        total = 0.0
        with torch.no_grad():
            for lo in range(0, len(rows), self.batch_size):
                part = rows[lo:lo + self.batch_size]
                total += float(loss_fn(self._forward(net, [x[part] for x in inputs]), target[part])) * len(part)
        return total / max(len(rows), 1)

    def _batched(self, net: nn.Module, inputs: list[Tensor], fn: Callable[[nn.Module, list[Tensor]], Tensor]
                 ) -> np.ndarray:
        set_threads(1)
        net.eval()
        step = max(int(self.batch_size), 1) * 2
        with torch.no_grad():
            return np.concatenate([fn(net, [x[lo:lo + step] for x in inputs]).numpy()
                                   for lo in range(0, len(inputs[0]), step)])

    # ---- state
    def _params(self) -> dict[str, Any]:
        params = self.get_params()
        params["augment"] = None  # a callable is not JSON; the caller saves the augmentation settings itself
        return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}

    def _weights_blob(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.net_.state_dict(), buffer)
        return buffer.getvalue()

    def _history_state(self) -> dict[str, Any]:
        h = self.history_
        return {"history": {"train_loss": h.train_loss, "val_loss": h.val_loss}, "best_epoch": h.best_epoch,
                "seconds": h.seconds}

    def _state(self, **learned: Any) -> tuple[dict, dict[str, bytes]]:
        """The JSON state (constructor parameters, input shape, ``learned`` attributes, history) and the weights."""
        self._require_fitted()
        state = {"params": self._params(), "n_channels": self.n_channels_, "image_size": list(self.image_size_),
                 "fine_tuned": self.fine_tuned_, **learned, **self._history_state()}
        return state, {self._blob: self._weights_blob()}

    @classmethod
    def _from_state(cls, state: dict, blobs: dict[str, bytes], **learned: Any) -> Self:
        """A fitted estimator from its state; ``learned`` sets the subclass's own fitted attributes."""
        model = cls(**state["params"])
        model.n_channels_ = int(state["n_channels"])
        model.image_size_ = tuple(state["image_size"])
        for name, value in learned.items():
            setattr(model, name, value)
        model._restore_net(blobs, state)
        return model

    def _restore_net(self, blobs: dict[str, bytes], state: dict) -> None:
        net = self._build_net()
        net.load_state_dict(torch.load(io.BytesIO(blobs[self._blob]), weights_only=True))
        self.net_ = net.eval()
        h = state["history"]
        self.history_ = History(list(h["train_loss"]), list(h["val_loss"]), state["best_epoch"],
                                float(state.get("seconds", 0.0)))
        self.fine_tuned_ = bool(state.get("fine_tuned", False))


# ----- the slice classifier ------------------------------------------------------------------------------
class ImageClassifier(ClassifierMixin, _ImageNetEstimator):
    """Binary "lesion present" per slice: SmallResNet on (N, C, H, W) images, the fusion net when ``fit`` gets
    tabular features (N, F) too. BCE loss, with ``pos_weight`` = negatives / positives when
    ``class_weight="balanced"``.

    Parameters: the architecture (``widths``, ``blocks_per_stage``, ``dropout``, ``tabular_hidden``, see
    ``precimed.models.imaging.SmallResNet``); training (``optimizer`` one of sgd/adam/adamw/adagrad/rmsprop,
    ``lr``, ``weight_decay``, ``batch_size``, ``max_epochs``, ``patience``, ``val_fraction``); ``augment``
    (callable on training batches); fine-tuning (``freeze``: some of "stem", "stage1".."stageK", "backbone";
    ``backbone_lr``), used only when ``fit`` gets ``init_state``; ``random_state``; ``progress`` (a bar on a
    terminal).
    """

    _blob = "cnn.pt"

    def __init__(self, widths: Sequence[int] = (16, 32, 64), blocks_per_stage: int = 1, dropout: float = 0.1,
                 tabular_hidden: int = 16, optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 1e-4,
                 batch_size: int = 32, max_epochs: int = 30, patience: int = 6, val_fraction: float = 0.2,
                 class_weight: str | None = "balanced", augment: Augment | None = None, freeze: Sequence[str] = (),
                 backbone_lr: float | None = None, random_state: int = 0, progress: bool = False) -> None:
        self.widths = widths
        self.blocks_per_stage = blocks_per_stage
        self.dropout = dropout
        self.tabular_hidden = tabular_hidden
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.class_weight = class_weight
        self.augment = augment
        self.freeze = freeze
        self.backbone_lr = backbone_lr
        self.random_state = random_state
        self.progress = progress

    def _build_net(self) -> nn.Module:
        return SmallResNet(self.n_channels_, 1, tuple(self.widths), self.blocks_per_stage, self.dropout,
                           self.n_tabular_, self.tabular_hidden)

    def _forward(self, net: nn.Module, inputs: Sequence[Tensor]) -> Tensor:
        return net(inputs[0], inputs[1] if len(inputs) > 1 else None)

    def _augment_batch(self, inputs: list[Tensor], target: Tensor, rng: np.random.Generator
                       ) -> tuple[list[Tensor], Tensor]:
        if self.augment is None:
            return inputs, target
        images, _ = self.augment(inputs[0], None, rng=rng)  # a classifier has no mask to move with the image
        return [torch.as_tensor(images, dtype=torch.float32), *inputs[1:]], target

    def fit(self, X: Any, y: Any, groups: Any = None, tabular: Any = None, init_state: Any = None) -> Self:
        """Train on images X (N, C, H, W), labels y (N,) 0/1, optional patient groups and tabular features."""
        where = "ImageClassifier.fit"
        X = check_images(X, where=where)
        y = _check_rows(y, len(X), name="y", where=where)
        if not np.isin(np.unique(y), (0, 1)).all() or len(np.unique(y)) != 2:
            raise DataError(f"{where}: y must hold 0 (no lesion) and 1 (lesion), both present; got values "
                            f"{np.unique(y)[:10].tolist()}", column="y")
        y = y.astype(np.float32)
        groups = None if groups is None else _check_rows(groups, len(X), name="groups", where=where).astype(str)
        tab = _check_tabular(tabular, len(X), where=where)
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"{where}: class_weight must be None or 'balanced'; got {self.class_weight!r}")
        set_threads(1)
        torch.manual_seed(self.random_state)
        self.n_channels_ = int(X.shape[1])
        self.image_size_ = (int(X.shape[2]), int(X.shape[3]))
        self.n_tabular_ = 0 if tab is None else int(tab.shape[1])
        self.classes_ = np.array([0, 1])
        idx_tr, idx_va = self._split(len(X), groups, y.astype(int))
        y_tr = y[idx_tr]
        self.pos_weight_ = (float((1 - y_tr).sum() / max(y_tr.sum(), 1.0))
                            if self.class_weight == "balanced" else 1.0)
        pos_weight = torch.tensor(self.pos_weight_, dtype=torch.float32)
        net = self._build_net()
        inputs = [torch.from_numpy(X)] + ([] if tab is None else [torch.from_numpy(tab)])
        self.history_ = self._train(net, lambda out, t: bce_loss(out, t, pos_weight), inputs, torch.from_numpy(y),
                                    idx_tr, idx_va, init_state)
        self.fine_tuned_ = init_state is not None
        self.net_ = net
        return self

    def _inputs(self, X: Any, tabular: Any, where: str) -> list[Tensor]:
        self._require_fitted()
        X = check_images(X, where=where, channels=self.n_channels_)
        tab = _check_tabular(tabular, len(X), where=where, n_features=self.n_tabular_)
        if tab is not None and not self.n_tabular_:
            raise DataError(f"{where}: the model was fitted on images only; got tabular features")
        return [torch.from_numpy(X)] + ([] if tab is None else [torch.from_numpy(tab)])

    def decision_function(self, X: Any, tabular: Any = None) -> np.ndarray:
        """The logit of "lesion present" per slice."""
        inputs = self._inputs(X, tabular, "ImageClassifier.predict")
        return self._batched(self.net_, inputs, lambda net, b: self._forward(net, b)[:, 0])

    def predict_proba(self, X: Any, tabular: Any = None) -> np.ndarray:
        """(N, 2): probabilities of no lesion and of a lesion in each slice."""
        p = torch.sigmoid(torch.from_numpy(self.decision_function(X, tabular))).numpy().astype(np.float64)
        return np.column_stack([1 - p, p])

    def predict(self, X: Any, tabular: Any = None) -> np.ndarray:
        """(N,) 0/1: lesion present when its probability reaches 0.5."""
        return (self.predict_proba(X, tabular)[:, 1] >= 0.5).astype(int)

    def embed(self, X: Any) -> np.ndarray:
        """(N, widths[-1]) image embeddings (the pooled last-stage features; the tabular path is not included)."""
        self._require_fitted()
        X = check_images(X, where="ImageClassifier.embed", channels=self.n_channels_)
        return self._batched(self.net_, [torch.from_numpy(X)], lambda net, b: net.embed(b[0]))

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        return self._state(n_tabular=self.n_tabular_, pos_weight=self.pos_weight_)

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        return cls._from_state(state, blobs, n_tabular_=int(state["n_tabular"]),
                               pos_weight_=float(state["pos_weight"]), classes_=np.array([0, 1]))


# ----- the segmenter -------------------------------------------------------------------------------------
def dice_ce_loss(lesion_weight: float) -> DiceCELoss:
    """MONAI's Dice + cross-entropy on two-class logits and (N, 1, H, W) label maps, the lesion class weighted
    ``lesion_weight`` in the cross-entropy term only.

    DiceCELoss's own ``weight`` also multiplies each class's Dice term, which would scale the lesion Dice
    by the (large) class ratio; the Dice term is already insensitive to class imbalance, so only the
    cross-entropy (a weighted mean over pixels) takes the weight.
    """
    loss = DiceCELoss(softmax=True, to_onehot_y=True)
    loss.cross_entropy = nn.CrossEntropyLoss(weight=torch.tensor([1.0, float(lesion_weight)], dtype=torch.float32))
    return loss


def _pooled_dice(prob: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    pred = prob >= threshold
    denom = pred.sum() + truth.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(pred, truth).sum() / denom)


class ImageSegmenter(_ImageNetEstimator):
    """Lesion segmentation of (N, C, H, W) slices with a 2-D MONAI U-Net (two output classes), trained on
    Dice + cross-entropy (``monai.losses.DiceCELoss``, softmax, one-hot targets).

    ``lesion_weight`` weighs the lesion class in both terms: a number, or "balanced" (background /
    lesion pixels in the training masks, capped at 100). ``threshold_`` (0.5 by default) is the
    probability threshold of ``predict``, tuned for the best pooled Dice on the validation slices when
    they hold lesion. Other parameters as for ``ImageClassifier`` (``freeze``: "stage1".."stageK" are the
    encoder levels, the bottom last, "backbone" the whole encoder).
    """

    _blob = "unet.pt"

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128), num_res_units: int = 1, dropout: float = 0.0,
                 optimizer: str = "adamw", lr: float = 2e-3, weight_decay: float = 1e-5, batch_size: int = 16,
                 max_epochs: int = 40, patience: int = 8, val_fraction: float = 0.2,
                 lesion_weight: float | str = "balanced", augment: Augment | None = None,
                 freeze: Sequence[str] = (), backbone_lr: float | None = None, random_state: int = 0,
                 progress: bool = False) -> None:
        self.channels = channels
        self.num_res_units = num_res_units
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.lesion_weight = lesion_weight
        self.augment = augment
        self.freeze = freeze
        self.backbone_lr = backbone_lr
        self.random_state = random_state
        self.progress = progress

    def _build_net(self) -> nn.Module:
        return unet(self.n_channels_, 2, tuple(self.channels), self.num_res_units, self.dropout)

    def _augment_batch(self, inputs: list[Tensor], target: Tensor, rng: np.random.Generator
                       ) -> tuple[list[Tensor], Tensor]:
        if self.augment is None:
            return inputs, target
        images, masks = self.augment(inputs[0], target[:, 0].to(torch.uint8), rng=rng)  # masks as (N, H, W) 0/1
        masks = torch.as_tensor(masks).to(target.dtype).reshape(target.shape)
        return [torch.as_tensor(images, dtype=torch.float32)], masks

    def _lesion_weight(self, masks: np.ndarray) -> float:
        if self.lesion_weight == "balanced":
            lesion = float(masks.sum())
            return float(min(max((masks.size - lesion) / max(lesion, 1.0), 1.0), MAX_LESION_WEIGHT))
        try:
            weight = float(self.lesion_weight)
        except (TypeError, ValueError):
            weight = float("nan")
        if not np.isfinite(weight) or weight <= 0:
            raise ConfigError(f"ImageSegmenter: lesion_weight must be a positive number or 'balanced'; "
                              f"got {self.lesion_weight!r}")
        return weight

    def fit(self, X: Any, masks: Any, groups: Any = None, init_state: Any = None) -> Self:
        """Train on images X (N, C, H, W) and lesion masks (N, H, W) 0/1, validation split by patient groups."""
        where = "ImageSegmenter.fit"
        X = check_images(X, where=where)
        masks = check_masks(masks, X, where=where)
        groups = None if groups is None else _check_rows(groups, len(X), name="groups", where=where).astype(str)
        set_threads(1)
        torch.manual_seed(self.random_state)
        self.n_channels_ = int(X.shape[1])
        self.image_size_ = (int(X.shape[2]), int(X.shape[3]))
        net = self._build_net()
        net.check_size(*self.image_size_)
        present = masks.reshape(len(masks), -1).max(axis=1).astype(int)
        idx_tr, idx_va = self._split(len(X), groups, present if len(np.unique(present)) == 2 else None)
        self.lesion_weight_ = self._lesion_weight(masks[idx_tr])
        loss = dice_ce_loss(self.lesion_weight_)
        target = torch.from_numpy(masks[:, None].astype(np.float32))  # (N, 1, H, W) class indices
        self.history_ = self._train(net, loss, [torch.from_numpy(X)], target, idx_tr, idx_va, init_state)
        self.fine_tuned_ = init_state is not None
        self.net_ = net
        self.threshold_ = 0.5
        truth = masks[idx_va].astype(bool)
        if truth.any():
            prob = self._proba(X[idx_va])
            scores = [(_pooled_dice(prob, truth, t), -abs(t - 0.5), t) for t in THRESHOLDS]
            self.threshold_ = float(max(scores)[2])
        return self

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return self._batched(self.net_, [torch.from_numpy(X)],
                             lambda net, b: torch.softmax(net(b[0]), dim=1)[:, 1]).astype(np.float32)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, H, W) float32 lesion probability per pixel."""
        self._require_fitted()
        X = check_images(X, where="ImageSegmenter.predict", channels=self.n_channels_)
        return self._proba(X)

    def predict(self, X: Any, threshold: float | None = None) -> np.ndarray:
        """(N, H, W) uint8 lesion masks: probability at or above ``threshold`` (default ``threshold_``)."""
        proba = self.predict_proba(X)
        cut = self.threshold_ if threshold is None else float(threshold)
        return (proba >= cut).astype(np.uint8)

    def predict_volume(self, volume_slices: Any, roi: Sequence[int] = (96, 96), overlap: float = 0.25, *,
                       proba: bool = False) -> np.ndarray:
        """Masks (uint8, or the float32 probabilities with ``proba``) of (Z, C, H, W) slices of any size.

        Each batch of slices goes through MONAI's sliding-window inference with windows of ``roi`` pixels
        (padded where the slice is smaller) and ``overlap``: a 512×512 CT slice is segmented by a net
        trained on 96×96 crops without ever building the whole-slice activations at once.
        """
        self._require_fitted()
        X = check_images(volume_slices, where="ImageSegmenter.predict_volume", channels=self.n_channels_)
        roi = tuple(int(r) for r in roi)
        net: UNet2D = self.net_  # type: ignore[assignment]
        if len(roi) != 2:
            raise ConfigError(f"ImageSegmenter.predict_volume: roi must be (height, width); got {list(roi)}")
        net.check_size(*roi)

        def window(net: nn.Module, batch: list[Tensor]) -> Tensor:
            out = sliding_window_inference(batch[0], roi, sw_batch_size=max(int(self.batch_size), 1),
                                           predictor=net, overlap=overlap)
            return torch.softmax(torch.as_tensor(out), dim=1)[:, 1]

        prob = self._batched(net, [torch.from_numpy(X)], window).astype(np.float32)
        return prob if proba else (prob >= self.threshold_).astype(np.uint8)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        return self._state(lesion_weight=self.lesion_weight_, threshold=self.threshold_)

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        return cls._from_state(state, blobs, lesion_weight_=float(state["lesion_weight"]),
                               threshold_=float(state["threshold"]))
