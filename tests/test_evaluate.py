"""`reactdiff evaluate`: ground truth in neighbour-matrix order, reactions merged by row, metrics + report."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reactdiff.data.layout import ClipPath, read_pair_list
from reactdiff.eval.evaluate import evaluate
from reactdiff.eval.cli import main as evaluate_main
from reactdiff.eval.ground_truth import load_ground_truth
from reactdiff.eval.metrics import compute_all
from reactdiff.sampling.writer import reaction_path
from conftest import sample_random_init
from wandb_records import history, offline_runs, run_info

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


def test_evaluate_writes_metrics_and_report(samples, tiny_shards, tiny_test_shards, capsys):
    assert evaluate_main(["--samples", str(samples), "--shards", str(tiny_shards), "--baseline-shards",
                          str(tiny_test_shards)]) == 0
    report = json.loads((samples / "metrics.json").read_text())
    assert set(report["results"]) == {"model", "baseline: mean", "baseline: random", "baseline: mime",
                                      "reference: ground truth"}
    assert report["baseline_shards"] == str(tiny_test_shards)
    for row in report["results"].values():  # motion statistics on every row, per stream group
        assert set(row["motion"]) == {"expression", "rotation", "translation"}
    assert report["results"]["reference: ground truth"]["motion"]["rotation"]["jitter_ratio"] == 1.0
    assert report["results"]["baseline: mean"]["motion"]["expression"]["jitter"] == 0.0
    seams = report["results"]["model"]["seams"]  # the model's window joins (32-frame windows over 120 frames)
    assert seams["joins"] > 0 and set(seams) == {"joins", "steps", "expression", "rotation", "translation"}
    assert not any("seams" in r for name, r in report["results"].items() if name != "model")
    assert set(report["couplings"]["pairs"]) and (samples / "couplings.png").stat().st_size > 1000
    bands = {name: r["bands"] for name, r in report["results"].items()}  # power per band, generated / true
    assert bands["model"]["bands_hz"] == [[0.0, 1.0], [1.0, 3.0], [3.0, 6.0], [6.0, 12.5]]
    for group in ("expression", "rotation", "translation"):
        assert bands["reference: ground truth"][group]["ratio"] == pytest.approx([1.0] * 4)
        assert bands["baseline: mean"][group]["ratio"] == [0.0] * 4
        assert all(r > 0 for r in bands["model"][group]["ratio"])
    assert (samples / "bands.png").stat().st_size > 1000
    assert report["k"] == 3 and report["rows"] == 12 and report["convention"] == "react2024"
    gt = load_ground_truth(tiny_shards, frames=FRAMES)
    pred = np.stack([np.load(reaction_path(samples, r)) for r in range(12)])
    direct = compute_all(pred, gt.listener_fv, gt.speaker_fv, gt.neighbours, kind="3dmm")
    for m in ("FRCorr", "FRDist", "FRDiv", "FRDvs", "FRVar", "FRSyn"):
        assert report["results"]["model"][m] == pytest.approx(direct[m], rel=1e-9)
    assert report["results"]["baseline: mime"]["FRSyn"] == 0 and report["results"]["baseline: mime"]["FRDiv"] == 0
    text = (samples / "report.md").read_text()
    assert "| model |" in text and "| model |" in capsys.readouterr().out
    assert "never the evaluated one" in text and "## Motion" in text and "couplings.png" in text
    assert "Window joins (the model samples 32-frame windows" in text
    assert "Power per frequency band within 64-frame stretches" in text and "](bands.png)" in text
    assert (samples / "metrics.png").stat().st_size > 1000
    # and in wandb (offline by default), grouped with the run the sampled export came from (its config's name)
    [log] = offline_runs(samples / "wandb")
    assert run_info(log)["group"] == "reactdiff" and run_info(log)["job_type"] == "eval"
    [row] = history(log)
    assert row["eval/model/FRCorr"] == pytest.approx(report["results"]["model"]["FRCorr"])
    assert row["eval/baseline: mean/FRDist"] == pytest.approx(report["results"]["baseline: mean"]["FRDist"])
    assert row["eval/model/jitter_ratio/rotation"] == pytest.approx(
        report["results"]["model"]["motion"]["rotation"]["jitter_ratio"])
    assert row["eval/metrics/_type"] == "image-file" and row["eval/couplings/_type"] == "image-file"
    assert row["eval/bands/_type"] == "image-file"
    assert row["eval/table/_type"] == "table-file"
    assert (log.parent / "files/report.md").read_text() == text


def test_random_baseline_never_draws_from_the_evaluated_split(tiny_shards, tiny_test_shards):
    from reactdiff.eval.baselines import baselines, listener_pool

    gt = load_ground_truth(tiny_shards, frames=FRAMES)
    # unique markers: every evaluated listener is a constant 1000 + row, every pool listener -1 - row
    gt.listener_fv[:] = 1000 + np.arange(gt.rows, dtype=np.float32)[:, None, None]
    pool = -1 - np.arange(20, dtype=np.float32)[:, None, None] * np.ones((1, FRAMES, 58), np.float32)
    rows = baselines(gt, 10, pool, seed=3)
    assert (rows["baseline: random"] < 0).all()  # only pool listeners, never an evaluated (appropriate) one
    assert len(np.unique(rows["baseline: random"][:, :, 0, 0])) > 10  # and really drawn, not one repeated
    assert np.allclose(rows["baseline: mean"], pool.mean())
    assert (rows["reference: ground truth"] == gt.listener_fv[:, None]).all()
    # with real shards: every random draw is a listener of the test split, none of the evaluated train split
    real = load_ground_truth(tiny_shards, frames=FRAMES)
    drawn = baselines(real, 4, listener_pool(tiny_test_shards, FRAMES))["baseline: random"].reshape(-1, FRAMES * 58)
    test_listeners = listener_pool(tiny_test_shards, FRAMES).reshape(-1, FRAMES * 58)
    assert all((test_listeners == d).all(1).any() for d in drawn)
    assert not any((real.listener_fv.reshape(-1, FRAMES * 58) == d).all(1).any() for d in drawn)


def test_ground_truth_row_is_the_metrics_ceiling():
    from reactdiff.eval.baselines import baselines
    from reactdiff.eval.ground_truth import GroundTruth

    rng = np.random.default_rng(0)
    n, t, k = 4, 60, 5
    listener = np.cumsum(rng.normal(size=(n, t, 58)), axis=1).astype(np.float32)  # no constant channels
    speaker = np.cumsum(rng.normal(size=(n, t, 58)), axis=1).astype(np.float32)
    gt = GroundTruth(speaker, listener, np.zeros((n, t, 25)), np.zeros((n, t, 25)), np.eye(n, dtype=bool), n)
    ref = baselines(gt, k, None)["reference: ground truth"]
    res = compute_all(ref, listener, speaker, gt.neighbours, kind="3dmm", convention="react2024")
    assert res["FRDist"] == 0 and res["FRCorr"] == pytest.approx(k, rel=1e-6)


def test_baseline_split_is_resolved_and_never_the_evaluated_one(samples, tiny_shards, tiny_test_shards, tmp_path,
                                                                capsys):
    from reactdiff.eval.baselines import default_baseline_shards, resolve_baseline_shards

    assert default_baseline_shards(tiny_test_shards) == tiny_shards.resolve()  # the sibling train folder
    assert default_baseline_shards(tiny_shards) is None  # train itself has no other train sibling
    assert resolve_baseline_shards(tiny_test_shards, None) == tiny_shards.resolve()
    with pytest.raises(ValueError, match="is the evaluated split"):
        resolve_baseline_shards(tiny_shards, tiny_shards)
    with pytest.raises(FileNotFoundError, match="no index.json"):
        resolve_baseline_shards(tiny_shards, tmp_path)
    assert evaluate_main(["--samples", str(samples), "--shards", str(tiny_shards), "--out", str(tmp_path)]) == 2
    assert "pass --baseline-shards DIR" in capsys.readouterr().err
    assert evaluate_main(["--samples", str(samples), "--shards", str(tiny_shards), "--out", str(tmp_path),
                          "--no-baselines"]) == 0
    assert list(json.loads((tmp_path / "metrics.json").read_text())["results"]) == ["model"]


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
    report = evaluate(samples, tiny_shards, tmp_path, renders=renders, extractor=small_extractor, frame_step=10,
                      with_baselines=False)
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


def test_verdict_says_when_a_reference_shows_a_target_out_of_reach():
    from reactdiff.eval.report import verdict

    def row(corr, dist):
        return {"FRCorr": corr, "FRDist": dist}

    results = {"model": row(0.5, 110.0), "baseline: mean": row(0.0, 80.0), "baseline: random": row(0.1, 120.0),
               "baseline: mime": row(0.2, 115.0), "reference: ground truth": row(4.0, 0.0),
               "reference: new person": row(0.9, 100.0)}
    text = verdict(results)
    assert text.startswith("**The model does not beat the honest baselines.**")
    assert "FRDist below every baseline: no (model 110, best baseline mean 80; out of reach on this data: new " \
           "person 100 misses it too)" in text
    assert "FRCorr above mean and random: yes (model 0.5, random 0.1)." in text
    results["reference: new person"] = row(0.9, 70.0)  # a reference that gets there: the target is reachable
    assert "out of reach" not in verdict(results)
    del results["reference: new person"]  # the ground truth alone never counts as "real-looking reactions"
    assert "out of reach" not in verdict(results)
