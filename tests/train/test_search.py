import numpy as np

from precimed.train.estimators import NeuralRiskModel
from precimed.train.search import tune_net

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 4)).astype(np.float32)
Y = (X[:, 0] + RNG.normal(scale=0.5, size=300) > 0).astype(float)
SPACE = {"depth": (1, 2), "width": (16, 32), "dropout": (0.0, 0.3), "lr": (1e-3, 1e-2), "weight_decay": (1e-5, 1e-2)}
BASE = NeuralRiskModel(task="binary", max_epochs=10, patience=3)


def test_search_returns_the_best_trial_and_is_reproducible_for_a_seed():
    a = tune_net(X, Y, BASE, trials=4, space=SPACE, seed=1)
    b = tune_net(X, Y, BASE, trials=4, space=SPACE, seed=1)
    assert a["best_params"] == b["best_params"]
    assert a["best_value"] == min(t["value"] for t in a["trials"])
    assert len(a["best_params"]["hidden"]) in (1, 2) and a["best_params"]["hidden"][0] in (16, 32)
    assert 1e-3 <= a["best_params"]["lr"] <= 1e-2
