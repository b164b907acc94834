"""`reactdiff evaluate`: ground truth in neighbour-matrix order, reactions merged by row, metrics + report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from reactdiff.data.layout import ClipPath, read_pair_list
from reactdiff.eval.evaluate import main as evaluate_main
from reactdiff.eval.ground_truth import load_ground_truth
from reactdiff.eval.metrics import compute_all
from reactdiff.sampling.cli import main as sample_main
from reactdiff.sampling.writer import reaction_path

FRAMES = 120


@pytest.fixture(scope="module")
def samples(tiny_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    assert sample_main(["--random-init", "--shards", str(tiny_shards), "--out", str(out), "--quiet",
                        "model.size=tiny", "data.history=8", f"data.eval_frames={FRAMES}", "sample.window=32",
                        "sample.steps=2", "sample.k=3"]) == 0
    return out


def test_ground_truth_is_in_mirrored_order(tiny_react, tiny_shards):
    gt = load_ground_truth(tiny_shards, frames=FRAMES)
    rows = read_pair_list(tiny_react / "train.csv")
    split = tiny_react / "train"
    assert gt.rows == 12 and gt.neighbours.shape == (12, 12) and gt.neighbours.diagonal().all()
    for k, row in enumerate(rows):
        a = np.load(ClipPath.parse(row.a).fv(split)).reshape(-1, 58)[:FRAMES]
        b = np.load(ClipPath.parse(row.b).fv(split)).reshape(-1, 58)[:FRAMES]
        assert np.array_equal(gt.speaker_fv[k], a) and np.array_equal(gt.listener_fv[k], b)
        assert np.array_equal(gt.speaker_fv[6 + k], b) and np.array_equal(gt.listener_fv[6 + k], a)


def test_evaluate_writes_metrics_and_report(samples, tiny_shards, capsys):
    assert evaluate_main(["--samples", str(samples), "--shards", str(tiny_shards)]) == 0
    report = json.loads((samples / "metrics.json").read_text())
    assert set(report["results"]) == {"model", "baseline: mime", "baseline: random"}
    assert report["k"] == 3 and report["rows"] == 12 and report["convention"] == "react2024"
    gt = load_ground_truth(tiny_shards, frames=FRAMES)
    pred = np.stack([np.load(reaction_path(samples, r)) for r in range(12)])
    direct = compute_all(pred, gt.listener_fv, gt.speaker_fv, gt.neighbours, kind="3dmm")
    for m in ("FRCorr", "FRDist", "FRDiv", "FRDvs", "FRVar", "FRSyn"):
        assert report["results"]["model"][m] == pytest.approx(direct[m], rel=1e-9)
    assert report["results"]["baseline: mime"]["FRSyn"] == 0 and report["results"]["baseline: mime"]["FRDiv"] == 0
    assert "| model |" in (samples / "report.md").read_text() and "| model |" in capsys.readouterr().out
    assert (samples / "metrics.png").stat().st_size > 1000


def test_missing_rows_are_listed(samples, tiny_shards, tmp_path, capsys):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(samples, partial)
    reaction_path(partial, 7).unlink()
    assert evaluate_main(["--samples", str(partial), "--shards", str(tiny_shards)]) == 2
    assert "lacks reactions for 1 of 12 rows (e.g. [7])" in capsys.readouterr().err
