"""Bulk scoring of partitions: Dask (a LocalCluster of 2 processes) and the local engine give the single-process
predictions, file by file; bad input is one line (exit 2) and nothing is written."""

import numpy as np
import pandas as pd
import pytest

from helpers import PIMA, fast
from precimed.bundle import load_bundle
from precimed.config import parse_config
from precimed.errors import ValueRangeError
from precimed.workflows.bulk import predict_partitions
from precimed.workflows.predicting import predict_frame
from precimed.workflows.training import train_from_config

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    config = fast(PIMA)
    config["models"] |= {"names": ["mlp", "logistic"]}
    return train_from_config(parse_config(config), tmp_path_factory.mktemp("pima") / "run").bundle_path


def patients(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"row_id": np.arange(seed * 1000, seed * 1000 + n), "glu": rng.uniform(60, 200, n),
                         "bmi": rng.uniform(18, 45, n), "age": rng.integers(21, 80, n),
                         "ped": rng.uniform(0.1, 2.0, n)})


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parts")
    for i in range(6):
        patients(50 + 7 * i, i).to_parquet(folder / f"part-{i:02d}.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c:
        yield c


def test_dask_partitions_equal_single_process_predictions_and_local_files(bundle_dir, parts, tmp_path):
    result = predict_partitions(bundle_dir, str(parts / "*.parquet"), tmp_path / "dask", engine="dask", workers=2,
                                progress=False)
    assert len(result.partitions) == 6 and result.rows == sum(50 + 7 * i for i in range(6))
    bundle = load_bundle(bundle_dir)
    for i in range(6):
        got = pd.read_parquet(tmp_path / "dask" / f"part-{i:02d}.parquet")
        expected = predict_frame(bundle, pd.read_parquet(parts / f"part-{i:02d}.parquet"))
        pd.testing.assert_frame_equal(got, expected)
    local = predict_partitions(bundle_dir, str(parts / "*.parquet"), tmp_path / "local", engine="local",
                               progress=False)
    assert local.rows == result.rows
    names = sorted(p.name for p in (tmp_path / "dask").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "local").iterdir()) == [f"part-{i:02d}.parquet"
                                                                               for i in range(6)]
    for name in names:
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_a_running_scheduler_scores_a_chosen_model_and_refuses_a_bad_partition(bundle_dir, parts, cluster, tmp_path):
    out = predict_partitions(bundle_dir, str(parts / "part-0[01].parquet"), tmp_path / "a", engine="dask",
                             scheduler=cluster.scheduler_address, model="logistic", progress=False)
    assert [p.name for _, p, _ in out.partitions] == ["part-00.parquet", "part-01.parquet"]
    assert set(pd.read_parquet(tmp_path / "a" / "part-01.parquet")["model"]) == {"logistic"}
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        frame = patients(20, i)
        if i == 2:
            frame.loc[5, "age"] = 430
        frame.to_csv(bad / f"p{i}.csv", index=False)
    with pytest.raises(ValueRangeError, match=r"p2\.csv: .*age must lie in") as err:
        predict_partitions(bundle_dir, str(bad / "*.csv"), tmp_path / "b", engine="dask",
                           scheduler=cluster.scheduler_address, progress=False)
    assert "2005" in str(err.value)  # the patient's id
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.partial-*"))


def one_line_error(run_cli, *args):
    code, _, err = run_cli("predict", *args, "--no-progress")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_cli_bad_inputs_are_one_line_and_write_nothing(bundle_dir, parts, tmp_path, run_cli, cluster):
    err = one_line_error(run_cli, bundle_dir, "--input", str(tmp_path / "none" / "*.parquet"),
                         "--output", tmp_path / "o1")
    assert "no file matches" in err and "none" in err
    err = one_line_error(run_cli, bundle_dir, "--input", str(parts / "*.parquet"), "--output", parts / "scored")
    assert "inside --input" in err
    err = one_line_error(run_cli, bundle_dir, "--input", str(parts / "*.parquet"), "--output", parts.parent)
    assert "is a folder that holds" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    patients(10, 0).to_parquet(bad / "ok.parquet", index=False)
    patients(10, 1).assign(age=lambda d: np.where(d.index == 3, 430, d["age"])).to_parquet(bad / "worse.parquet")
    err = one_line_error(run_cli, bundle_dir, "--input", str(bad / "*.parquet"), "--output", tmp_path / "o2",
                         "--engine", "dask", "--scheduler", cluster.scheduler_address)
    assert "worse.parquet" in err and "1003" in err and "age" in err
    assert not (tmp_path / "o2").exists()
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        err = one_line_error(run_cli, bundle_dir, "--input", str(parts / "*.parquet"), "--output", tmp_path / "o3",
                             "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9")
    assert "cannot reach a Dask scheduler" in err and "127.0.0.1:9" in err
    assert not (tmp_path / "o3").exists()


def test_without_dask_the_dask_engine_says_which_extra_to_install(bundle_dir, parts, tmp_path, run_cli,
                                                                   monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` sees when it is not installed
    err = one_line_error(run_cli, bundle_dir, "--input", str(parts / "*.parquet"), "--output", tmp_path / "o",
                         "--engine", "dask")
    assert "pip install 'precimed[scale]'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_local_engine_is_the_default_for_a_glob(bundle_dir, parts, tmp_path, run_cli):
    code, out, err = run_cli("predict", bundle_dir, "--input", str(parts / "part-0[45].parquet"),
                             "--output", tmp_path / "scored", "--no-progress")
    assert code == 0, err
    assert "in 2 partition(s)" in out and "(local)" in out
    assert sorted(p.name for p in (tmp_path / "scored").iterdir()) == ["part-04.parquet", "part-05.parquet"]
    code, _, err = run_cli("predict", bundle_dir, "--input", str(parts / "part-0[45].parquet"),
                           "--output", tmp_path / "scored", "--no-progress")
    assert code == 2 and "--overwrite" in err
    # one file with --engine: a folder of one partition, next to the file (only a glob's folder is its data set)
    (tmp_path / "one.parquet").write_bytes((parts / "part-00.parquet").read_bytes())
    code, out, err = run_cli("predict", bundle_dir, "--input", tmp_path / "one.parquet", "--output", tmp_path / "one",
                             "--engine", "local", "--no-progress")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["one.parquet"]
