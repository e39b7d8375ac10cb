"""Imaging speed on CPU: precimed's image estimators vs a plain PyTorch loop over the same tensors, in one run.

- training images/s of the CNN classifier (SmallResNet) and the U-Net: ``ImageClassifier.fit`` /
  ``ImageSegmenter.fit`` (inner validation split, early stopping, augmentation off) against a bare loop
  (same net, AdamW, same batch size and epochs, no validation) over the same tensors;
- inference images/s of both: ``predict_proba`` against ``net(x)`` under ``torch.no_grad`` in batches;
- one 512×512×60 CT volume (the real lung2 case of the pyradiomics data when present, else a random volume of
  that size, said in the output) segmented slice by slice with MONAI's sliding window (96×96 windows), seconds.

Images are 96×96, one channel, synthetic bright discs on noise (speed does not depend on content). One torch
thread. Run: .venv/bin/python benchmarks/imaging_speed.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from precimed.models.imaging import SmallResNet, unet
from precimed.models.nets import set_threads
from precimed.train.imaging import ImageClassifier, ImageSegmenter

N, SIZE, EPOCHS, BATCH_CNN, BATCH_UNET = 512, 96, 3, 32, 16


def discs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n, 1, SIZE, SIZE)).astype(np.float32)
    masks = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    y = (rng.random(n) < 0.5).astype(int)
    for i in np.flatnonzero(y):
        cy, cx, r = rng.integers(15, SIZE - 15, 2).tolist() + [int(rng.integers(4, 10))]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        masks[i][disc] = 1
        X[i, 0][disc] += 2.0
    return X, masks, y


def plain_train(net: torch.nn.Module, X: np.ndarray, target: np.ndarray, loss_fn, batch: int) -> float:  # noqa: ANN001
    torch.manual_seed(0)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    xt, tt = torch.from_numpy(X), torch.from_numpy(target)
    start = time.perf_counter()
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss_fn(net(xt[idx]), tt[idx]).backward()
            opt.step()
    return time.perf_counter() - start


def plain_infer(net: torch.nn.Module, X: np.ndarray, batch: int) -> float:
    net.eval()
    xt = torch.from_numpy(X)
    with torch.no_grad():
        net(xt[:batch])  # warm-up, untimed (the estimator has run its net before being timed too)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(xt), batch):
            net(xt[i:i + batch])
    return time.perf_counter() - start


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ct_volume() -> tuple[np.ndarray, str]:
    try:
        from precimed.data import image_sets
        from precimed.preprocess.images import ImagePreprocessor

        case = next(c for c in image_sets.pyradiomics_cases() if c["case"] == "lung2")
        volume, _ = image_sets.load_case(case)
        pre = ImagePreprocessor(spacing=None, size=(512, 512), window="ct_lung", normalize="zscore",
                                per_modality=False).fit([volume])
        X = pre.transform(volume)
        return X[:60], "real CT (pyradiomics lung2, 60 of its 61 slices, 512×512)"
    except Exception as exc:  # noqa: BLE001 (the data may be absent: the benchmark still runs, and says so)
        rng = np.random.default_rng(0)
        return rng.normal(size=(60, 1, 512, 512)).astype(np.float32), f"random 60×512×512 volume ({exc})"


def main() -> None:
    set_threads(1)
    X, masks, y = discs(N)
    rows = []
    # classifier
    ours = ImageClassifier(widths=(16, 32, 64), batch_size=BATCH_CNN, max_epochs=EPOCHS, patience=EPOCHS + 1,
                           val_fraction=0.2, random_state=0)
    t_ours = timed(lambda: ours.fit(X, y))
    bce = torch.nn.BCEWithLogitsLoss()
    t_plain = plain_train(SmallResNet(1, 1, (16, 32, 64)), X, y.astype(np.float32)[:, None], bce, BATCH_CNN)
    n_fit = N - int(round(0.2 * N))  # the estimator trains on the rest after its inner validation split
    rows.append(("train", "CNN classifier", n_fit * EPOCHS / t_ours, N * EPOCHS / t_plain))
    ours.predict_proba(X[:BATCH_CNN])  # warm-up, untimed, as for the plain loop
    i_ours = timed(lambda: ours.predict_proba(X))
    i_plain = plain_infer(SmallResNet(1, 1, (16, 32, 64)), X, 2 * BATCH_CNN)  # the estimator scores 2 batches at a time
    rows.append(("infer", "CNN classifier", N / i_ours, N / i_plain))
    # U-Net
    seg = ImageSegmenter(channels=(16, 32, 64, 128), batch_size=BATCH_UNET, max_epochs=EPOCHS, patience=EPOCHS + 1,
                         val_fraction=0.2, random_state=0)
    t_seg = timed(lambda: seg.fit(X, masks))
    ce = torch.nn.CrossEntropyLoss()
    t_useg = plain_train(unet(1, 2, (16, 32, 64, 128)), X, masks.astype(np.int64), ce, BATCH_UNET)
    rows.append(("train", "U-Net", n_fit * EPOCHS / t_seg, N * EPOCHS / t_useg))
    seg.predict_proba(X[:BATCH_UNET])
    s_ours = timed(lambda: seg.predict_proba(X))
    s_plain = plain_infer(unet(1, 2, (16, 32, 64, 128)), X, 2 * BATCH_UNET)
    rows.append(("infer", "U-Net", N / s_ours, N / s_plain))
    print(f"{N} images of 1×{SIZE}×{SIZE}, {EPOCHS} epochs, one torch thread")
    print(f"{'':6} {'model':15} {'precimed img/s':>15} {'plain PyTorch img/s':>20} {'precimed / plain':>17}")
    for phase, model, a, b in rows:
        print(f"{phase:6} {model:15} {a:15.1f} {b:20.1f} {a / b:17.2f}")
    print("precimed's training images/s count the training images only; its time also holds the validation "
          "pass and early-stopping bookkeeping that the plain loop does not do")
    volume, what = ct_volume()
    t_vol = timed(lambda: seg.predict_volume(volume, roi=(96, 96), overlap=0.25))
    print(f"sliding-window U-Net segmentation of {what}: {t_vol:.1f} s ({len(volume) / t_vol:.2f} slices/s)")


if __name__ == "__main__":
    main()
