"""MARS end to end: the synthetic MARS generator, short clips in training, whole-clip evaluation balanced over
ranks by frames, generation to each clip's end, the react2025 / react2026 protocols against a slow transcription
of the challenge's definitions, and DTW in bounded memory."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def mars_shards(tmp_path_factory):
    from reactdiff.data.mars_shards import make_mars_shards
    from reactdiff.data.synthetic.mars import generate_mars

    root = tmp_path_factory.mktemp("mars")
    generate_mars(root / "data", sessions={"train": 2, "test": 2}, clips_per_session=3, min_frames=40,
                  max_frames=160, progress=False)
    for split in ("train", "test"):
        make_mars_shards(root / "data", split, root / "shards" / split, samples_per_shard=2,
                         audio_features="logmel", progress=False)
    return root


def test_synthetic_mars_layout_lengths_and_determinism(mars_shards, tmp_path):
    from reactdiff.data import mars_layout as M
    from reactdiff.data.synthetic.mars import generate_mars

    info = json.loads((mars_shards / "data" / "synthetic.json").read_text())
    clips, rejects = M.discover(mars_shards / "data", "test")
    assert len(clips) == 6 and not rejects and {c.session for c in clips} == {"session3", "session4"}
    for c in info["clips"]:
        face = np.load(M.MarsClip(c["session"], c["stem"]).path(mars_shards / "data" / c["split"], M.COEFFS_DIR,
                                                                 "listener"))
        assert face.shape == (c["frames"], 58) and 40 <= c["frames"] <= 160
    generate_mars(tmp_path / "again", sessions={"train": 2, "test": 2}, clips_per_session=3, min_frames=40,
                  max_frames=160, progress=False)
    a = sorted((mars_shards / "data" / "test").rglob("*.npy"))
    b = sorted((tmp_path / "again" / "test").rglob("*.npy"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    with pytest.raises(FileExistsError):
        generate_mars(tmp_path / "again", progress=False)


def test_synthetic_mars_clips_act_out_several_scripts_per_split(mars_shards, tmp_path):
    """Like the REACT generator's, a split's clips act out `templates` scripts (one script for a whole split made
    the benchmark's test listeners as calm or as busy as that one script); the template is recorded per clip."""
    from reactdiff.data.synthetic.mars import generate_mars

    info = json.loads((mars_shards / "data" / "synthetic.json").read_text())
    assert info["args"]["templates"] == 4
    assert len({c["template"] for c in info["clips"] if c["split"] == "train"}) > 1
    one = generate_mars(tmp_path / "one", sessions={"train": 2, "test": 2}, clips_per_session=3, min_frames=40,
                        max_frames=160, templates=1, progress=False)
    assert {c["template"] for c in json.loads((tmp_path / "one/synthetic.json").read_text())["clips"]} == {0}
    assert one["args"]["templates"] == 1
    with pytest.raises(ValueError, match="templates >= 1"):
        generate_mars(tmp_path / "none", templates=0, progress=False)


def test_padding_past_a_short_clip_never_enters_the_loss():
    from reactdiff.model.denoiser import Denoiser

    net = torch.nn.Linear(4, 4)  # frame by frame: what changes is only what the loss counts
    den = Denoiser(lambda x, c, **_: net(x), sigma_data=1.0)
    x0, noise, sigma = torch.randn(2, 16, 4), torch.randn(2, 16, 4), torch.tensor([0.5, 2.0])
    real = torch.arange(16)[None].expand(2, -1) < torch.tensor([[10], [16]])
    a, _ = den.loss(x0, sigma, noise, frames=real)
    x1 = x0.clone()
    x1[0, 10:] += 5.0  # only padding changes
    b, _ = den.loss(x1, sigma, noise, frames=real)
    assert torch.allclose(a, b)
    full, _ = den.loss(x0, sigma, noise)
    assert torch.allclose(a[1], full[1]) and not torch.allclose(a[0], full[0])


def test_short_clips_train_and_whole_clips_eval_once_across_ranks_by_frames(mars_shards):
    from reactdiff import config
    from reactdiff.data.reader import BatchStream
    from reactdiff.data.shard_index import ShardIndex

    shards = mars_shards / "shards" / "test"
    frames = ShardIndex.open(shards).sample_frames()
    cfg = config.load(None, [f"data.shards={shards}", "data.window=96", "data.history=16", "data.batch_size=2",
                             "data.num_workers=0", "data.audio=feat", "data.eval_frames=0"])
    batch = next(iter(BatchStream(cfg.data, train=True)))  # clips shorter than the window are padded, not refused
    assert batch["valid"].shape == (2, 112)
    for valid, start in zip(batch["valid"], batch["start"]):
        assert valid[16:].sum() <= 96 and bool(valid[16]) and int(start) >= 0
    seen, per_rank = {}, []
    for rank in range(3):
        total = 0
        for b in BatchStream(cfg.data, rank=rank, world_size=3, train=False):
            key = (b["key"][0], b["role"][0])
            assert key not in seen and bool(b["valid"].all())
            seen[key] = b["speaker_fv"].shape[1]
            total += b["speaker_fv"].shape[1]
        per_rank.append(total)
    assert len(seen) == 2 * len(frames) and sum(seen.values()) == 2 * sum(frames)  # every frame exactly once
    assert max(per_rank) - min(per_rank) <= 2 * max(frames)  # balanced by frames, not clip count


def _slow_ccc(x, y):
    out = []
    for i in range(x.shape[1]):
        cor = np.corrcoef(y[:, i], x[:, i])[0, 1]
        num = 2 * cor * np.std(y[:, i]) * np.std(x[:, i])
        out.append(num / (np.var(y[:, i]) + np.var(x[:, i]) + (y[:, i].mean() - x[:, i].mean()) ** 2 + 1e-8))
    return np.mean(out)


def _slow_dtw(x, y):
    n, m = len(x), len(y)
    r = np.full((n + 1, m + 1), np.inf)
    r[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            r[i, j] = np.sum((x[i - 1] - y[j - 1]) ** 2) + min(r[i - 1, j], r[i, j - 1], r[i - 1, j - 1])
    return math.sqrt(r[n, m])


def _slow_tlcc(pred, sp, fps):
    def shift(x, y, lag):
        return (x[lag:], y[:-lag]) if lag > 0 else (x[:lag], y[-lag:]) if lag < 0 else (x, y)

    rs = []
    for lag in range(-int(2 * fps - 1), int(2 * fps)):
        rs.append(np.mean([np.corrcoef(*shift(pred[:, i], sp[:, i], lag))[0, 1] for i in range(sp.shape[1])]))
    return abs(len(rs) // 2 - int(np.argmax(rs)))


def _slow_clip(pred, speaker, targets, fps):
    """The challenge's definitions, transcribed loop by loop (targets already at the prediction's length)."""
    k = len(pred)
    frc = sum(max(_slow_ccc(p, t) for t in targets) for p in pred)
    slices = ((0, 15, 1 / 15), (15, 17, 1.0), (17, 25, 1 / 8))
    frd = sum(min(sum(w * _slow_dtw(p[:, s:e], t[:, s:e]) for s, e, w in slices) for t in targets) for p in pred)
    flat = pred.reshape(k, -1)
    smse = sum(np.sum((a - b) ** 2) for a in flat for b in flat) / (k * (k - 1) * flat.shape[1])
    frvar = torch.var(torch.from_numpy(pred), dim=1).mean().item()
    mae = np.mean([np.mean([np.mean(np.abs(t[:, 15:] - p[:, 15:])) for t in targets]) for p in pred])
    return {"FRC": frc, "FRD": frd, "TLCC": _slow_tlcc(pred[0], speaker, fps), "S-MSE": smse, "FRVar": frvar,
            "MAE": mae}


def test_react2025_metrics_equal_a_slow_transcription_of_the_challenge_definitions():
    from reactdiff.eval.mars_metrics import clip_metrics, max_lag

    rng = np.random.default_rng(0)
    t, fps = 40, 10  # lags -19..19
    assert max_lag(fps) == 19 and max_lag(30) == 59
    pred = rng.random((3, t, 25))
    speaker = rng.random((t, 25))
    targets = [rng.random((t, 25)) for _ in range(4)]
    fast = clip_metrics(pred, speaker, targets, kind="attributes", fps=fps, reference_quirks=True, device="cpu")
    slow = _slow_clip(pred, speaker, targets, fps)
    for name, want in slow.items():
        assert fast[name] == pytest.approx(want, rel=1e-9, abs=1e-12), name


def test_targets_of_other_lengths_are_stretched_to_the_clip():
    from reactdiff.eval.mars_truth import align

    x = np.arange(10, dtype=np.float32)[:, None]
    assert align(x, 10) is x
    assert align(x, 20)[:, 0].tolist() == [v for v in range(10) for _ in range(2)]
    assert align(x, 5)[:, 0].tolist() == [1, 3, 5, 7, 9]


def test_dtw_in_bounded_memory_equals_the_whole_matrix():
    from reactdiff.eval.dtw import dtw_indexed

    rng = np.random.default_rng(1)
    a, b = torch.from_numpy(rng.random((3, 70, 5))), torch.from_numpy(rng.random((2, 70, 5)))
    ia, ib = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 1, 1])
    whole = dtw_indexed(a, b, ia, ib, device="cpu")
    striped = dtw_indexed(a, b, ia, ib, device="cpu", memory_budget=8 * 70 * 3 * 7)  # stripes of a few rows
    assert torch.allclose(whole, striped, rtol=1e-12)
    assert whole[0].item() == pytest.approx(_slow_dtw(a[0].numpy(), b[0].numpy()), rel=1e-12)


def test_mars_sample_and_evaluate_whole_clips_both_protocols(mars_shards, tmp_path):
    from reactdiff.eval.cli import main as evaluate_main
    from reactdiff.sampling.cli import main as sample_main
    from reactdiff.sampling.writer import reaction_path

    shards = mars_shards / "shards" / "test"
    out = tmp_path / "reactions"
    assert sample_main(["--random-init", "--shards", str(shards), "--out", str(out), "data.eval_frames=0",
                        "data.audio=feat", "model.audio=feat", "model.audio_dim=80", "data.emotion=true",
                        "model.predict_emotion=true", "model.size=tiny", "sample.k=3", "sample.steps=2",
                        "sample.window=64", "data.history=16"]) == 0
    from reactdiff.data.shard_index import ShardIndex

    index = ShardIndex.open(shards)
    lengths = {}
    for (a, b), n in zip(index.matrix_rows(), index.sample_frames()):
        lengths[a] = lengths[b] = n
    for row, n in lengths.items():  # generated to each clip's end, shorter-than-window clips too
        assert np.load(reaction_path(out, row)).shape == (3, n, 58)
        assert np.load(reaction_path(out, row, emotion=True)).shape == (3, n, 25)
    assert evaluate_main(["--reactions", str(out), "--shards", str(shards), "--wandb", "disabled"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["protocol"] == "react2025" and report["kind"] == "attributes" and report["rows"] == 12
    gt = report["results"]["reference: ground truth"]
    # a column constant over a clip (an AU that never fires) has CCC 0 even against itself, as in the challenge code
    assert 2.9 < gt["FRC"] <= 3.0 and gt["FRD"] == pytest.approx(0.0, abs=1e-9)
    assert gt["FRC"] > report["results"]["model"]["FRC"]
    assert set(report["results"]) == {"model", "baseline: mean", "baseline: random", "baseline: mime",
                                      "reference: ground truth"}
    text = (out / "report.md").read_text()
    assert "(MARS)" in text and "frame-weighted" in text and (out / "couplings.png").is_file()
    assert report["couplings"]["clips"] + report["couplings"]["skipped"] == 12
    from reactdiff.eval.motion import window_joins

    joins = sum(int(window_joins(n, 64, 8).sum()) for n in lengths.values())  # each clip's windows, its own length
    assert joins > 0 and report["results"]["model"]["seams"]["joins"] == joins
    assert report["results"]["model"]["seams"]["steps"] == sum(n - 1 for n in lengths.values())
    bands = report["results"]["model"]["bands"]  # the clips of 64 frames or more, at 30 fps
    assert bands["fps"] == 30.0 and bands["bands_hz"][-1] == [6.0, 15.0] and (out / "bands.png").is_file()
    assert report["results"]["reference: ground truth"]["bands"]["rotation"]["ratio"] == pytest.approx([1.0] * 4)
    assert evaluate_main(["--reactions", str(out), "--shards", str(shards), "--out", str(tmp_path / "e26"),
                          "--protocol", "react2026", "--wandb", "disabled", "--no-baselines"]) == 0
    assert json.loads((tmp_path / "e26" / "metrics.json").read_text())["rows"] == 6  # speaker -> listener only
    assert evaluate_main(["--reactions", str(out), "--shards", str(shards), "--protocol", "react2024",
                          "--wandb", "disabled"]) == 2


def test_demo_runs_end_to_end_on_mars(tmp_path):
    """`reactdiff demo --layout mars`: synthetic MARS -> shards -> DeepSpeed training -> fan-out evaluation with
    the react2025 protocol -> videos at 30 fps."""
    from reactdiff.demo import main

    assert main(["--layout", "mars", "--work", str(tmp_path / "w"), "--shards", str(tmp_path / "s"),
                 "--sessions", "2,1,1", "--quiet", "data.num_workers=1", "train.steps=20", "train.checkpoint_every=20",
                 "train.val_every=20", "train.log_every=10"]) == 0
    report = json.loads((tmp_path / "w" / "eval" / "metrics.json").read_text())
    assert report["protocol"] == "react2025" and report["kind"] == "attributes" and report["fps"] == 30
    assert json.loads((tmp_path / "w" / "render" / "render.json").read_text())["settings"]["fps"] == 30
    from wandb_records import history, offline_runs  # what wandb stored of the aggregation: the MARS metrics

    [log] = offline_runs(tmp_path / "w" / "eval")
    [row] = history(log)
    assert row["eval/model/FRC"] == pytest.approx(report["results"]["model"]["FRC"])
    assert "eval/model/TLCC" in row and "eval/model/FRCorr" not in row


def test_raw_audio_windows_at_30_fps_line_up_with_the_face_frames(mars_shards):
    from reactdiff import config
    from reactdiff.data.audio_features import LogMel
    from reactdiff.data.reader import BatchStream

    cfg = config.load(None, [f"data.shards={mars_shards / 'shards' / 'train'}", "data.window=60",
                             "data.history=30", "data.batch_size=2", "data.num_workers=0", "data.audio=raw"])
    batch = next(iter(BatchStream(cfg.data, train=True)))
    assert batch["speaker_audio"].shape == (2, 90 * 16000 // 30)  # 3 s of 16 kHz audio for 90 frames at 30 fps
    mel = LogMel()
    feat = mel.batch(batch["speaker_audio"], 90)
    assert feat.shape == (2, 90, 80)
    # audio of 25 fps frames keeps REACT 2024's hops exactly (one 40 ms hop per frame, no interpolation)
    x = batch["speaker_audio"][:, :75 * 640]
    plain = torch.log(mel._mel(x.float()) + 1e-6).transpose(1, 2)[:, :75]
    assert torch.equal(mel.batch(x, 75), plain)
    # and a model with the in-model logmel frontend trains on them
    from reactdiff.data.normalise import FaceStats
    from reactdiff.model.export import build_model

    mcfg = config.load(None, [f"data.shards={mars_shards / 'shards' / 'train'}", "data.window=64",
                              "data.history=32", "data.batch_size=2", "data.num_workers=0", "data.audio=raw",
                              "model.audio=logmel", "model.size=tiny"])
    stream = BatchStream(mcfg.data, train=True)
    model = build_model(mcfg, FaceStats.from_normaliser(stream.dataset.normaliser))
    loss = model.training_loss(next(iter(stream)), history=32, generator=torch.Generator().manual_seed(0))["loss"]
    assert torch.isfinite(loss)


def test_mars_oracle_rebuilds_each_rows_recorded_listener_and_draws_new_ones(mars_shards):
    """The synthetic generator as a model of MARS listeners (bench quality's oracle rows with --layout mars): with
    the dataset's own random streams it rebuilds the true listener of every row of both directions (so its keys
    name the rows right), and its fresh draws react to the same speaker but differ."""
    from reactdiff.data.synthetic.oracle import mars_oracle_reactions
    from reactdiff.eval.mars_truth import load_mars_truth

    rows = load_mars_truth(mars_shards / "shards/test", "react2025")
    recorded = mars_oracle_reactions(mars_shards / "data", "test", k=1, recorded=True)
    new = mars_oracle_reactions(mars_shards / "data", "test", k=2)
    assert len(rows) == len(recorded) == len(new) == 12
    for r in rows:
        key = (*r.clip, r.direction)
        np.testing.assert_allclose(recorded[key][0], r.targets["3dmm"][0], atol=1e-5)
        assert new[key].shape == (2, r.frames, 58) and not np.allclose(new[key][0], new[key][1])
    assert all(np.array_equal(a, b) for a, b in zip(new.values(), mars_oracle_reactions(mars_shards / "data", "test",
                                                                                         k=2).values()))
    with pytest.raises(ValueError, match="not a synthetic MARS dataset"):
        mars_oracle_reactions(mars_shards / "shards", "test", k=1)


def test_mars_oracle_reads_a_dataset_written_before_templates_as_one_script_per_split(tmp_path):
    from reactdiff.data.synthetic.mars import generate_mars
    from reactdiff.data.synthetic.oracle import mars_oracle_reactions

    root = tmp_path / "old"
    generate_mars(root, sessions={"train": 1, "test": 1}, clips_per_session=2, min_frames=40, max_frames=60,
                  templates=1, progress=False)
    info = json.loads((root / "synthetic.json").read_text())
    del info["args"]["templates"]
    (root / "synthetic.json").write_text(json.dumps(info))
    recorded = mars_oracle_reactions(root, "test", k=1, recorded=True)
    for c in (c for c in info["clips"] if c["split"] == "test"):
        face = np.load(root / "test/coefficients/listener" / c["session"] / f"{c['stem']}.npy")
        np.testing.assert_allclose(recorded[(c["session"], c["stem"], "speaker->listener")][0], face, atol=1e-5)
