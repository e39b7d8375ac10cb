"""A hyper-parameter search shared by several processes through an Optuna study in a database.

Two processes search the same data with trials=6 against one study (SQLite here, PostgreSQL when
PRECIMED_TEST_PG_URL is set): the study ends with 6 completed trials (7 when both processes started a trial
while it held 5: each stops once it sees 6 complete, and a trial already running is finished, not dropped),
and both processes, and a final read of the study, report the same best trial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from helpers import PIMA, fast
from precimed.config import mask_url, parse_config
from precimed.errors import ConfigError

WORKER = """
import json, sys
import numpy as np
from precimed.train.estimators import NeuralRiskModel
from precimed.train.search import tune_net

rng = np.random.default_rng(0)
X = rng.normal(size=(240, 4)).astype(np.float32)
y = (X[:, 0] + rng.normal(scale=0.5, size=240) > 0).astype(float)
space = {"depth": (1, 2), "width": (16, 32), "dropout": (0.0, 0.3), "lr": (1e-3, 1e-2),
         "weight_decay": (1e-5, 1e-2)}
base = NeuralRiskModel(task="binary", max_epochs=3, patience=2, batch_size=64)
result = tune_net(X, y, base, trials=int(sys.argv[3]), space=space, seed=0, storage=sys.argv[1], study=sys.argv[2])
print("RESULT " + json.dumps(result))
"""
TRIALS = 6


def _search_in_two_processes(tmp_path, storage: str, study: str) -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), storage, study, str(TRIALS)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    return results


def _check_shared_study(tmp_path, storage: str, study: str) -> None:
    import optuna
    from optuna.trial import TrialState

    from precimed.train.search import WIDTHS, suggest

    a, b = _search_in_two_processes(tmp_path, storage, study)
    url = storage.replace("postgresql://", "postgresql+psycopg://", 1)
    final = optuna.load_study(study_name=study, storage=url)
    complete = final.get_trials(states=(TrialState.COMPLETE,))
    # 6, or 7 when both processes started a trial while the study held 5 completed ones
    assert TRIALS <= len(complete) <= TRIALS + 1
    assert not final.get_trials(states=(TrialState.RUNNING, TrialState.FAIL))
    space = {"depth": (1, 2), "width": (min(WIDTHS), max(WIDTHS)), "dropout": (0, 1), "lr": (1e-9, 1),
             "weight_decay": (1e-9, 1)}
    best = suggest(optuna.trial.FixedTrial(final.best_trial.params), space)
    best = {k: list(v) if isinstance(v, tuple) else v for k, v in best.items()}
    numbers = sorted(t.number for t in complete)
    # the process that finished last read the finished study: its best is the study's; one that finished while
    # the other's last trial still ran (the 7th, see above) read every trial but that one
    last = max((a, b), key=lambda r: len(r["trials"]))
    assert last["best_params"] == best and last["best_value"] == final.best_value
    assert [t["number"] for t in last["trials"]] == numbers
    for result in (a, b):
        seen = [t["number"] for t in result["trials"]]
        assert set(seen) <= set(numbers) and len(seen) >= len(numbers) - 1
        if len(seen) == len(numbers):
            assert result["best_params"] == best and result["best_value"] == final.best_value
        assert result["study"] == study and "secret" not in result["storage"]

    # a later run on the finished study adds no trial and reads the same best
    again = _rerun(storage, study)
    assert again["best_params"] == best
    assert len(optuna.load_study(study_name=study, storage=url).trials) == len(final.trials)


def _rerun(storage: str, study: str) -> dict:
    import numpy as np

    from precimed.train.estimators import NeuralRiskModel
    from precimed.train.search import tune_net

    space = {"depth": (1, 2), "width": (16, 32), "dropout": (0.0, 0.3), "lr": (1e-3, 1e-2),
             "weight_decay": (1e-5, 1e-2)}
    X = np.zeros((10, 4), dtype=np.float32)
    base = NeuralRiskModel(task="binary", max_epochs=3)
    return tune_net(X, np.zeros(10), base, trials=TRIALS, space=space, storage=storage, study=study)


def test_two_processes_share_one_sqlite_study_and_agree_on_the_best_trial(tmp_path):
    _check_shared_study(tmp_path, f"sqlite:///{tmp_path / 'search.db'}", "precimed-test")


def test_two_processes_share_one_postgresql_study_and_agree_on_the_best_trial(tmp_path, pg_url):
    _check_shared_study(tmp_path, pg_url, f"precimed-test-{uuid.uuid4().hex[:6]}")


def _config(storage: str, **search) -> dict:
    cfg = fast(PIMA)
    cfg["models"]["names"] = ["mlp"]
    cfg["training"]["search"] = {"trials": 2, "storage": storage, **search}
    return cfg


def test_storage_url_scheme_is_checked_and_the_password_never_shown():
    with pytest.raises(ConfigError) as err:
        parse_config(_config("mysql://alice:s3cr3t@db.example/search"))
    assert "training.search.storage" in str(err.value) and "postgresql" in str(err.value)
    assert "s3cr3t" not in str(err.value) and "mysql://alice:***@db.example/search" in str(err.value)
    with pytest.raises(ConfigError, match="in-memory"):
        parse_config(_config("sqlite://"))
    for ok in ("postgresql://alice:s3cr3t@db.example:5432/search", "postgresql+psycopg://db/search",
               "sqlite:///runs/search.db"):
        cfg = parse_config(_config(ok, study="pima-mlp"))
        assert cfg.training.search.storage == ok and "s3cr3t" not in cfg.training.search.masked_storage
    assert mask_url("postgresql://alice:p@ss:w@rd@host/db?x=1") == "postgresql://alice:***@host/db?x=1"
    assert mask_url("postgresql://alice@host/db") == "postgresql://alice@host/db"
    assert mask_url("sqlite:///search.db") == "sqlite:///search.db"


def test_an_unreachable_database_is_one_line_and_exit_2(run_cli, write_config, tmp_path):
    storage = "postgresql://alice:s3cr3t@127.0.0.1:1/search"
    code, out, err = run_cli("train", write_config(_config(storage)), "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in err
    line = " ".join(err.split())
    assert "cannot open the search study 'precimed-pima-small-mlp'" in line
    assert "postgresql://alice:***@127.0.0.1:1/search" in line and "s3cr3t" not in out + err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="sqlite:///"):
        from precimed.train.search import _shared_study

        _shared_study(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}", "s", 0)


def test_the_storage_password_never_reaches_a_dump_a_repr_or_an_error() -> None:
    from pydantic import ValidationError

    from precimed.config import SearchConfig

    secret = "s3cr3t-pw"
    cfg = SearchConfig(trials=2, storage=f"postgresql://alice:{secret}@db.example:5432/optuna")
    assert secret not in json.dumps(cfg.model_dump(mode="json")) and secret not in repr(cfg)
    assert cfg.masked_storage == "postgresql://alice:***@db.example:5432/optuna"
    with pytest.raises(ValidationError) as err:
        SearchConfig(trials=2, storage=f"mysql://alice:{secret}@db.example/optuna")
    assert secret not in str(err.value)
