"""Training you can watch: the validation loss (fixed windows, levels and noise: the same on 1 and 2 ranks and at any
batch size), samples of validation clips during a real 2-rank run (equal to `reactdiff sample` on the export),
grid videos, loss.png, and what wandb stored of it all."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from reactdiff import config
from reactdiff.model.denoiser import SigmaDensity
from reactdiff.model.export import build_model
from reactdiff.train.run_log import read_rows
from reactdiff.train.validation import ValidationSet, resolve_val_shards, sigma_grid
from test_train import base_args, launch
from wandb_records import history, offline_runs, run_info

REPO = Path(__file__).resolve().parent.parent


def tiny_model(shards, val_shards):
    cfg = config.load(None, ["model.size=tiny", "data.history=8", "data.window=16", f"data.shards={shards}",
                             f"data.val_shards={val_shards}"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.nn.init.normal_(model.unet.out.weight, std=0.05)
    return cfg, model


def test_sigma_grid_spans_the_training_density():
    d = SigmaDensity("lognormal", p_mean=0.0, p_std=1.4, sigma_data=1.0)
    grid = sigma_grid(d, 8)
    assert len(grid) == 8
    assert grid[0] == pytest.approx(math.exp(-2.3263 * 1.4), rel=1e-3)
    assert grid[-1] == pytest.approx(math.exp(2.3263 * 1.4), rel=1e-3)
    ratios = grid[1:] / grid[:-1]
    torch.testing.assert_close(ratios, ratios[:1].expand(7))  # log-spaced
    cos = SigmaDensity("cosine", sigma_data=0.5)
    assert cos.quantile(0.0) == pytest.approx(0.01) and cos.quantile(1.0) == pytest.approx(80.0)


def test_val_shards_default_to_the_sibling_folder(tiny_shards, tiny_test_shards, tmp_path):
    cfg = config.load(None, [f"data.shards={tiny_shards}"])
    assert resolve_val_shards(cfg.data) is None  # tiny_shards has no `val` sibling
    assert resolve_val_shards(config.load(None, [f"data.shards={tiny_shards}",
                                                 f"data.val_shards={tiny_test_shards}"]).data) == tiny_test_shards
    assert resolve_val_shards(config.load(None, ["data.val_shards=none"]).data) is None
    with pytest.raises(FileNotFoundError, match="data.val_shards=.*no index.json"):
        resolve_val_shards(config.load(None, [f"data.val_shards={tmp_path}"]).data)


def test_validation_loss_is_fixed_and_independent_of_batch_and_world_size(tiny_shards, tiny_test_shards, tmp_path):
    cfg, model = tiny_model(tiny_shards, tiny_test_shards)
    vset = ValidationSet.from_shards(cfg, model.dim, model.density, tiny_test_shards, windows=10, levels=3)
    again = ValidationSet.from_shards(cfg, model.dim, model.density, tiny_test_shards, windows=10, levels=3)
    assert torch.equal(vset.noise, again.noise) and torch.equal(vset.batch["listener_fv"], again.batch["listener_fv"])
    assert len(set(vset.batch["start"].tolist())) > 2  # windows from several places of the clips
    one = vset.loss(model, batch_size=3)
    torch.testing.assert_close(vset.loss(model, batch_size=64), one, rtol=1e-6, atol=0)
    assert one.shape == (3,) and torch.isfinite(one).all() and not torch.allclose(one, one[:1].expand(3))
    # the sum of two ranks' shares, computed in one process, is the whole
    halves = vset.loss(model, 0, 2, 4) + vset.loss(model, 1, 2, 4)
    torch.testing.assert_close(halves, one, rtol=1e-6, atol=0)
    # and across 2 real gloo ranks
    out = tmp_path / "val.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nnodes", "1", "--nproc_per_node", "2",
                          "--rdzv_backend", "c10d", "--rdzv_endpoint", "127.0.0.1:0",
                          str(REPO / "tests/val_loss_ranks.py"), str(tiny_shards), str(tiny_test_shards), str(out),
                          "5"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    np.testing.assert_allclose(json.loads(out.read_text()), one.numpy(), rtol=1e-6)


@pytest.fixture(scope="module")
def watched_run(tiny_shards, tiny_test_shards, tmp_path_factory):
    """8 steps on 2 ranks (ZeRO-3: the raw weights are gathered), validation every 4, samples and videos at the end."""
    from reactdiff.render import synthetic_model

    out = tmp_path_factory.mktemp("watch")
    faceverse = synthetic_model.write_model(out / "fv.npy", rings=12, segments=16)
    args = base_args(tiny_shards, out, "watched", "train.zero_stage=3", f"data.val_shards={tiny_test_shards}",
                     "train.val_every=4", "train.val_windows=12", "train.val_levels=4", "train.sample_every=100",
                     "train.sample_clips=3", "train.sample_k=2", "train.sample_steps=3", "data.eval_frames=60",
                     f"train.render_faceverse={faceverse}", "train.render_size=32", "sample.window=16",
                     "sample.overlap=4")
    res = launch(args, nproc=2)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out / "watched", res.stdout


def test_validation_during_training(watched_run):
    run, stdout = watched_run
    rows = read_rows(run / "metrics.jsonl", "validation")
    assert [r["step"] for r in rows] == [4, 8]
    assert all(len([k for k in r if k.startswith("val/loss_ema@")]) == 4 for r in rows)
    assert all(np.isfinite(r["val/loss"]) and np.isfinite(r["val/loss_ema"]) for r in rows)
    assert rows[0]["val/loss"] != rows[1]["val/loss"]
    assert (run / "loss.png").is_file()
    assert "[train] validation at step 4: loss" in stdout and "% of the run's wall time" in stdout
    # training rows stay where they were
    assert [r["step"] for r in read_rows(run / "metrics.jsonl")] == list(range(1, 9))
    assert [r["step"] for r in read_rows(run / "metrics.jsonl", "samples")] == [8]


def test_samples_during_training_equal_reactdiff_sample(watched_run, tiny_test_shards, tmp_path):
    from reactdiff.sampling.cli import main as sample_main

    run, stdout = watched_run
    preview = run / "samples" / "step_0000008"
    doc = json.loads((preview / "metrics.json").read_text())
    assert len(doc["rows"]) == 3 and np.isfinite(doc["FRCorr"]) and doc["FRDist"] > 0
    assert {"jitter_ratio/expression", "variance_ratio/translation"} <= set(doc)
    assert (preview / "curves.png").stat().st_size > 10_000
    assert "[train] samples at step 8: 3 clips x 2 reactions" in stdout
    out = tmp_path / "sampled"
    assert sample_main(["--export", str(run / "export"), "--shards", str(tiny_test_shards), "--out", str(out),
                        "--limit", "3", "--quiet", "sample.k=2", "sample.steps=3"]) == 0
    for row in doc["rows"]:
        np.testing.assert_allclose(np.load(preview / "reactions" / f"{row:05d}.npy"),
                                   np.load(out / "reactions" / f"{row:05d}.npy"), rtol=0, atol=1e-4)
    for row in doc["rows"]:  # a grid video per clip: [speaker | true listener | 2 reactions], with audio
        with av.open(str(preview / f"grid_{row:05d}.mp4")) as c:
            assert (c.streams.video[0].width, c.streams.video[0].height) == (4 * 32, 32 + 16)
            assert len(c.streams.audio) == 1 and sum(1 for _ in c.decode(video=0)) == 60


def test_wandb_holds_validation_samples_and_videos(watched_run):
    run, _ = watched_run
    [log] = offline_runs(run)
    info = run_info(log)
    assert info["group"] == "watched" and info["job_type"] == "train"
    rows = history(log)
    val = [r for r in rows if "val/loss" in r]
    assert [r["_step"] for r in val] == [4, 8]
    [samples] = [r for r in rows if "samples/FRCorr" in r]
    assert samples["_step"] == 8 and samples["samples/curves/_type"] == "image-file"
    videos = [k for k in samples if k.startswith("samples/grid_") and k.endswith("/_type")]
    assert len(videos) == 3 and all(samples[k] == "video-file" for k in videos)
    paths = [samples[k.replace("/_type", "/path")] for k in videos]
    assert all((log.parent / "files" / p).stat().st_size > 1000 for p in paths)


def test_a_finished_run_rerun_does_not_watch_again(watched_run, tiny_shards, tiny_test_shards):
    run, _ = watched_run
    before = (run / "metrics.jsonl").read_text()
    args = base_args(tiny_shards, run.parent, "watched", "train.zero_stage=3", f"data.val_shards={tiny_test_shards}",
                     "train.val_every=4", "train.val_windows=12", "train.val_levels=4", "train.sample_every=100",
                     "train.sample_clips=3", "train.sample_k=2", "train.sample_steps=3", "data.eval_frames=60",
                     "sample.window=16", "sample.overlap=4")
    res = launch(args, nproc=2)  # the same world size (resuming on another is not supported yet)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "validation at step" not in res.stdout and (run / "metrics.jsonl").read_text() == before


def test_an_unusable_sibling_val_folder_only_turns_watching_off(tiny_shards, tiny_test_shards, tmp_path):
    import shutil

    shutil.copytree(tiny_shards, tmp_path / "data" / "train")
    shutil.copytree(tiny_test_shards, tmp_path / "data" / "val")  # 120-frame clips: too short for eval_frames 750
    res = launch(base_args(tmp_path / "data" / "train", tmp_path / "runs", "sib", "train.steps=2",
                           "train.sample_every=2"), nproc=1)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "warning: the validation shards" in res.stdout and "cannot be watched" in res.stdout
    # named explicitly, the same folder is a config error
    res = launch(base_args(tmp_path / "data" / "train", tmp_path / "runs", "named", "train.steps=2",
                           "train.sample_every=2", f"data.val_shards={tmp_path / 'data' / 'val'}"), nproc=1)
    assert res.returncode != 0 and "data.val_shards=" in res.stdout + res.stderr
