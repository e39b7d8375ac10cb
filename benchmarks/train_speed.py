"""Training speed: precimed's trainer vs a plain PyTorch DataLoader loop vs scikit-learn's MLPClassifier.

Same data (100,000 × 50 synthetic rows, binary outcome), same 64-32 ReLU network, Adam, lr 1e-3,
batch 256, 10 epochs, one run each. Prints wall time, the ratio to precimed, and AUROC on 20,000
held-out rows. Run: .venv/bin/python benchmarks/train_speed.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier
from torch.utils.data import DataLoader, TensorDataset

from precimed.models.losses import bce_loss
from precimed.models.nets import MLP, set_threads
from precimed.train.loop import TrainSettings, fit_net

N, P, EPOCHS, BATCH, LR = 100_000, 50, 10, 256, 1e-3


def make_data(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N + 20_000, P)).astype(np.float32)
    w = rng.normal(size=P) / np.sqrt(P)
    logit = X @ w + 0.5 * np.sin(X[:, 0] * 2) + 0.3 * X[:, 1] * X[:, 2]
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return X[:N], y[:N], X[N:], y[N:]


def auroc(net: torch.nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    net.eval()
    with torch.no_grad():
        return roc_auc_score(y, net(torch.from_numpy(X)).squeeze(-1).numpy())


def run_precimed(X, y, Xt, yt) -> tuple[float, float]:
    torch.manual_seed(0)
    net = MLP(P, (64, 32), 1, dropout=0.0)
    xv, yv = torch.from_numpy(Xt[:2000]), torch.from_numpy(yt[:2000])
    settings = TrainSettings(optimizer="adam", lr=LR, weight_decay=0.0, batch_size=BATCH, max_epochs=EPOCHS,
                             patience=EPOCHS + 1)
    start = time.perf_counter()
    fit_net(net, bce_loss, torch.from_numpy(X), [torch.from_numpy(y)], xv, [yv], settings)
    return time.perf_counter() - start, auroc(net, Xt, yt)


def run_dataloader(X, y, Xt, yt) -> tuple[float, float]:
    torch.manual_seed(0)
    net = MLP(P, (64, 32), 1, dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=BATCH, shuffle=True)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        net.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = bce_loss(net(xb), yb)
            loss.backward()
            opt.step()
    return time.perf_counter() - start, auroc(net, Xt, yt)


def run_sklearn(X, y, Xt, yt) -> tuple[float, float]:
    clf = MLPClassifier(hidden_layer_sizes=(64, 32), solver="adam", learning_rate_init=LR, batch_size=BATCH,
                        max_iter=EPOCHS, alpha=0.0, random_state=0, shuffle=True, tol=0.0, n_iter_no_change=EPOCHS + 1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return time.perf_counter() - start, roc_auc_score(yt, clf.predict_proba(Xt)[:, 1])


def main() -> None:
    set_threads(1)
    torch.optim.Adam(MLP(2).parameters())  # torch imports its compiler stack on the first optimizer: not timed
    X, y, Xt, yt = make_data()
    rows = [("precimed fit_net (in-memory batches)", *run_precimed(X, y, Xt, yt)),
            ("PyTorch DataLoader loop", *run_dataloader(X, y, Xt, yt)),
            ("scikit-learn MLPClassifier", *run_sklearn(X, y, Xt, yt))]
    base = rows[0][1]
    print(f"MLP 64-32, {N:,} x {P} rows, {EPOCHS} epochs, batch {BATCH}, torch threads {torch.get_num_threads()}")
    print(f"{'trainer':40s} {'seconds':>8s} {'x precimed':>11s} {'AUROC':>7s}")
    for name, secs, auc in rows:
        print(f"{name:40s} {secs:8.2f} {secs / base:11.2f} {auc:7.4f}")


if __name__ == "__main__":
    main()
