"""`precimed walk-forward` on Rotterdam with fast settings: training on 1978-1986 only, blocks 1987-88, 1989-90 and
1991-93 with their sizes, C-index and calibration slope with finite CIs per block and model, drift per block, and
no training row in a scored block."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import fast
from precimed.bundle import load_bundle
from precimed.data import load_dataset
from precimed.workflows._run import load_cohort
from precimed.workflows.temporal_validation import time_blocks

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny walk-forward through the CLI: one small net and Cox PH, 30 bootstrap replicates."""
    from precimed.cli import main

    config = fast(yaml.safe_load((ROOT / "examples" / "rotterdam-temporal.yaml").read_text()))
    config["models"] = {**config["models"], "names": ["mlp", "cox_ph"], "compare": ["mlp - cox_ph"]}
    config["evaluation"] |= {"explain": 0, "subgroups": ["meno"]}
    folder = tmp_path_factory.mktemp("walk")
    path = folder / "rotterdam.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = folder / "out"
    mp = pytest.MonkeyPatch()
    mp.setattr("sys.argv", ["precimed", "walk-forward", str(path), "--time-column", "year", "--train-until", "1986",
                            "--block", "2", "--bootstrap", "30", "--out", str(out)])
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, exc
    finally:
        mp.undo()
    return out


def test_blocks_and_their_sizes(run):
    doc = json.loads((run / "walkforward.json").read_text())
    years = load_dataset("rotterdam")["year"]
    assert [b["label"] for b in doc["blocks"]] == ["1987–1988", "1989–1990", "1991–1993"]
    expected = [int(years.between(1987, 1988).sum()), int(years.between(1989, 1990).sum()),
                int(years.between(1991, 1993).sum())]
    assert [b["n"] for b in doc["blocks"]] == expected == [694, 702, 723]
    assert doc["training"]["n"] == int((years <= 1986).sum()) == 863
    assert sorted(p.name for p in run.iterdir()) == ["training", "walkforward.html", "walkforward.json"]


def test_every_block_has_finite_metrics_with_cis(run):
    doc = json.loads((run / "walkforward.json").read_text())
    assert doc["models"] == ["mlp", "cox_ph"]
    for block in doc["blocks"]:
        assert block["events"] > 100
        for name in doc["models"]:
            m = block["models"][name]
            for key in ("c_harrell", "c_uno", "calibration_slope"):
                v = m[key]
                assert all(np.isfinite([v["value"], v["ci_low"], v["ci_high"]])), (block["label"], name, key)
                assert v["ci_low"] <= v["value"] <= v["ci_high"]
            assert 0.55 < m["c_harrell"]["value"] < 0.85
            for h in ("1096", "1826"):
                entry = m["horizons"][h]
                assert entry["mature"] and 0 < entry["observed"] < 1 and 0 < entry["predicted"] < 1
        drift = block["drift"]
        assert len(drift["features"]) == 9 and np.isfinite(drift["domain_auroc"]["value"])
    # hormone therapy: about 5% before 1987, 28% in 1991-93
    assert "hormon" in doc["blocks"][-1]["drift"]["drifting"]
    html = (run / "walkforward.html").read_text()
    assert html.count("<img") >= 6 and "Harrell" in html


def test_no_training_row_is_scored(run):
    bundle = load_bundle(run / "training" / "bundle")
    cfg = bundle.config
    train = load_cohort(cfg.data.train, cfg)
    later = load_cohort(cfg.data.test, cfg)
    assert train.frame["year"].max() <= 1986 and later.frame["year"].min() >= 1987
    assert len(train) == bundle.metadata["training_data"]["n"] == 863
    assert not set(train.X.index) & set(later.X.index)
    doc = json.loads((run / "walkforward.json").read_text())
    assert sum(b["n"] for b in doc["blocks"]) == len(later) and doc["training_ids_in_blocks"] == 0


def test_time_blocks_merge_a_short_tail_and_small_blocks():
    years = np.array([1987] * 5 + [1988] * 5 + [1989] * 5 + [1990] * 5 + [1991] * 5 + [1992] * 5 + [1993] * 5)
    assert [label for label, _ in time_blocks(years, block=2, min_rows=1)] == ["1987–1988", "1989–1990", "1991–1993"]
    # blocks of one year with 5 rows each: every block under 10 rows takes the next in; the last one joins back
    assert [label for label, _ in time_blocks(years, block=1, min_rows=10)] == ["1987–1988", "1989–1990", "1991–1993"]
    small = time_blocks(np.array([2001] * 50 + [2002] * 5 + [2003] * 50), block=1, min_rows=20)
    assert [label for label, _ in small] == ["2001", "2002–2003"]
    assert sum(len(idx) for _, idx in small) == 105
