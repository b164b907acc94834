"""`reactdiff evaluate`: ground truth in neighbour-matrix order, reactions merged by row, metrics + report."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reactdiff.data.layout import ClipPath, read_pair_list
from reactdiff.eval.evaluate import evaluate
from reactdiff.eval.evaluate import main as evaluate_main
from reactdiff.eval.ground_truth import load_ground_truth
from reactdiff.eval.metrics import compute_all
from reactdiff.sampling.writer import reaction_path
from conftest import sample_random_init

FRAMES = 120


@pytest.fixture(scope="module")
def samples(tiny_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    sample_random_init(tiny_shards, out, FRAMES, k=3, window=32)
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


def small_extractor(batch):
    """A deterministic stand-in for InceptionV3: 2 x 2 average grey levels (4 features; the mesh frames are grey, so
    colour channels would only add exact copies and a singular covariance)."""
    return torch.nn.functional.adaptive_avg_pool2d(batch[:, :1], 2).flatten(1)


def test_frrea_from_rendered_videos(samples, tiny_shards, tmp_path, capsys):
    import shutil

    from reactdiff.eval.frrea_renders import frrea_from_renders
    from reactdiff.render.cli import main as render_main
    from reactdiff.render.synthetic_model import write_model

    model = write_model(tmp_path / "fv.npy", rings=10, segments=12)
    renders = tmp_path / "renders"
    assert render_main(["--samples", str(samples), "--faceverse", str(model), "--out", str(renders), "--shards",
                        str(tiny_shards), "--ground-truth", "--rows", "0,1", "--k", "2", "--size", "32",
                        "--quiet"]) == 0
    report = evaluate(samples, tiny_shards, tmp_path, renders=renders, extractor=small_extractor, frame_step=10)
    rea = report["results"]["model"]
    assert rea["FRRea"] > 0 and rea["frrea"]["real_videos"] == 2 and rea["frrea"]["generated_videos"] == 4
    assert "FRRea (Frechet distance of rendered listener frames" in (tmp_path / "report.md").read_text()
    # generated videos that are the true ones (each twice: the covariance differs by the factor 46/47): FRRea ~ 0
    same = tmp_path / "same"
    shutil.copytree(renders, same)
    for row in ("00000", "00001"):
        for k in ("k0", "k1"):
            shutil.copy(same / row / "gt.mp4", same / row / f"{k}.mp4")
    assert frrea_from_renders(same, small_extractor, step=10)["FRRea"] < 1e-3 * rea["FRRea"]
    # no ground-truth videos, no FRRea; and the CLI needs the Inception weights
    no_gt = tmp_path / "no_gt"
    assert render_main(["--samples", str(samples), "--faceverse", str(model), "--out", str(no_gt), "--rows", "0",
                        "--k", "1", "--size", "16", "--frames", "3", "--quiet"]) == 0
    with pytest.raises(ValueError, match="render with --ground-truth"):
        frrea_from_renders(no_gt, small_extractor)
    assert evaluate_main(["--samples", str(samples), "--shards", str(tiny_shards), "--renders", str(renders)]) == 2
    assert "--renders needs --fid-weights" in capsys.readouterr().err
