"""Online generation of whole clips and the `reactdiff sample` command."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from reactdiff import config
from reactdiff.data.reader import BatchStream
from reactdiff.model.export import build_model, load_export, save_export
from reactdiff.data.normalise import FaceStats
from reactdiff.sampling.cli import main as sample_main
from reactdiff.sampling.online import generate, window_starts
from reactdiff.sampling.writer import load_manifest, reaction_path

FRAMES = 120  # the tiny fixture's clips


@pytest.fixture(scope="module")
def setup(tiny_shards):
    cfg = config.load(None, [f"data.shards={tiny_shards}", "data.history=8", "data.num_workers=0",
                             f"data.eval_frames={FRAMES}", "data.batch_size=4", "model.size=tiny"])
    stream = BatchStream(cfg.data, train=False)
    torch.manual_seed(0)
    model = build_model(cfg, FaceStats.from_normaliser(stream.dataset.normaliser)).eval()
    for p in model.unet.parameters():  # switch on the zero-initialised output layers
        if p.dim() > 1 and not p.detach().any():
            torch.nn.init.normal_(p, std=0.05)
    return cfg, model, next(iter(stream))


def run(model, batch, **kw):
    args = dict(k=3, history=8, window=32, overlap=8, sampler="dpmpp_2m", steps=4, seed=0)
    args.update(kw)
    return generate(model, batch, **args)


@pytest.mark.parametrize("frames,window,overlap", [(750, 64, 8), (120, 32, 8), (100, 100, 0), (50, 64, 8),
                                                   (101, 16, 0), (97, 30, 29)])
def test_windows_cover_the_clip(frames, window, overlap):
    starts = window_starts(frames, window, overlap)
    covered = np.zeros(frames, int)
    for s in starts:
        covered[s:s + window] += 1
    assert covered.min() >= 1 and starts[0] == 0 and min(starts[-1] + window, frames) == frames
    assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:]))


def sub(batch, idx):
    return {k: (v[idx] if isinstance(v, torch.Tensor) else [v[i] for i in idx]) for k, v in batch.items()}


def test_a_reaction_does_not_depend_on_its_batch(setup):
    _, model, batch = setup
    together = run(model, sub(batch, [0, 1, 2]))
    assert together.shape == (3, 3, FRAMES, 58) and torch.isfinite(together).all()
    alone = run(model, sub(batch, [1]))
    torch.testing.assert_close(alone[0], together[1], rtol=0, atol=1e-5)
    again = run(model, sub(batch, [0, 1, 2]))
    assert torch.equal(again, together)
    assert not torch.allclose(together[0, 0], together[0, 1])  # the K reactions differ
    assert not torch.allclose(run(model, sub(batch, [1]), seed=1), alone)


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m_sde"])
def test_every_sampler_generates(setup, sampler):
    _, model, batch = setup
    out = run(model, sub(batch, [0]), sampler=sampler, steps=3)
    assert out.shape == (1, 3, FRAMES, 58) and torch.isfinite(out).all()


def test_a_window_never_sees_the_future(setup):
    _, model, batch = setup
    changed = sub(batch, [0])
    base = run(model, changed)
    changed["speaker_fv"] = changed["speaker_fv"].clone()
    changed["speaker_feat"] = changed["speaker_feat"].clone()
    changed["speaker_fv"][:, 40:] += 3.0  # after the end of window 1 ([0, 32))
    changed["speaker_feat"][:, 40:] -= 2.0
    out = run(model, changed)
    final_first = 32 - 8  # window 1's frames not cross-faded with window 2
    torch.testing.assert_close(out[:, :, :final_first], base[:, :, :final_first], rtol=0, atol=0)
    assert not torch.allclose(out[:, :, 40:], base[:, :, 40:])


def test_sample_command_writes_resumes_and_denormalises(tiny_shards, tmp_path):
    args = ["--random-init", "--shards", str(tiny_shards), "--out", str(tmp_path / "out"), "--quiet",
            "model.size=tiny", "data.history=8", f"data.eval_frames={FRAMES}", "sample.window=32",
            "sample.steps=10", "sample.k=2", "sample.temperature=1.0"]
    assert sample_main(args + ["--limit", "3"]) == 0
    first = {r: reaction_path(tmp_path / "out", r).stat().st_mtime_ns for r in (0, 6, 1)}
    assert not load_manifest(tmp_path / "out")["complete"]
    assert sample_main(args + ["sample.batch_size=3"]) == 0
    manifest = load_manifest(tmp_path / "out")
    assert manifest["complete"] and [e["row"] for e in manifest["entries"]] == list(range(12))
    assert manifest["settings"]["outputs"].startswith("raw")
    for r, mtime in first.items():
        assert reaction_path(tmp_path / "out", r).stat().st_mtime_ns == mtime  # kept, not regenerated
    reactions = np.load(reaction_path(tmp_path / "out", 7))
    assert reactions.shape == (2, FRAMES, 58) and reactions.dtype == np.float32
    # an untrained model's output layer is zero, so D(x) = c_skip x: the exact denoiser of N(0, sigma_data^2)
    # data. Its samples, de-normalised, must be mean_face + sigma_data z std_face (sigma_data 1: z-scored data)
    mean, std = np.load(tiny_shards / "mean_face.npy"), np.load(tiny_shards / "std_face.npy")
    z = (np.stack([np.load(reaction_path(tmp_path / "out", r)) for r in range(12)]) - mean) / std
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1, (z.mean(), z.std())
    # the same reactions from a fresh run with another batch size
    assert sample_main(args[:4] + [str(tmp_path / "again")] + args[5:] + ["sample.batch_size=1", "--limit", "2"]) == 0
    assert np.array_equal(np.load(reaction_path(tmp_path / "again", 6)), np.load(reaction_path(tmp_path / "out", 6)))


def test_export_round_trip(setup, tmp_path):
    cfg, model, batch = setup
    save_export(tmp_path / "exp", model, cfg, kind="test")
    loaded, cfg2, meta = load_export(tmp_path / "exp")
    assert meta["weights"] == "test" and meta["parameters"] == model.num_parameters()
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert loaded.stats.convention == "zscore" and torch.equal(loaded.stats.mean, model.stats.mean)
    torch.testing.assert_close(run(loaded, sub(batch, [0])), run(model, sub(batch, [0])), rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not fit"):
        load_export(tmp_path / "exp", ["model.size=small"])
    with pytest.raises(FileNotFoundError, match="export folder"):
        load_export(tmp_path)


def test_fan_out_tasks_together_equal_one_run(tiny_shards, tmp_path):
    common = ["--random-init", "--shards", str(tiny_shards), "--quiet", "model.size=tiny", "data.history=8",
              f"data.eval_frames={FRAMES}", "sample.window=32", "sample.steps=2", "sample.k=2"]
    assert sample_main(common + ["--out", str(tmp_path / "one")]) == 0
    for rank in (2, 0):  # task 1 of 3 not run yet: the merged manifest is incomplete
        assert sample_main(common + ["--out", str(tmp_path / "fan"), "--rank", str(rank), "--world-size", "3"]) == 0
    partial = load_manifest(tmp_path / "fan")
    assert not partial["complete"] and len(partial["entries"]) == 8
    assert sample_main(common + ["--out", str(tmp_path / "fan"), "--rank", "1", "--world-size", "3"]) == 0
    merged = load_manifest(tmp_path / "fan")
    assert merged["complete"] and [e["row"] for e in merged["entries"]] == list(range(12))
    for r in range(12):
        assert np.array_equal(np.load(reaction_path(tmp_path / "fan", r)), np.load(reaction_path(tmp_path / "one", r)))
    assert sample_main(common + ["--out", str(tmp_path / "x"), "--rank", "3"]) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_sample_command_on_the_gpu_matches_the_cpu(tiny_shards, tmp_path):
    args = ["--random-init", "--shards", str(tiny_shards), "--quiet", "--limit", "2", "model.size=tiny",
            "data.history=8", f"data.eval_frames={FRAMES}", "sample.window=32", "sample.steps=4", "sample.k=2"]
    for device in ("cpu", "cuda"):
        assert sample_main([*args, "--out", str(tmp_path / device), "--device", device]) == 0
    cpu, gpu = (np.load(reaction_path(tmp_path / d, 0)) for d in ("cpu", "cuda"))
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-3)  # same noise (drawn on the CPU), other kernels


@pytest.fixture(scope="module")
def guided_setup(tiny_shards):
    """A tiny model trained with condition dropout (it has the learned "no speaker"), output layers switched on."""
    cfg = config.load(None, [f"data.shards={tiny_shards}", "data.history=8", "data.num_workers=0",
                             f"data.eval_frames={FRAMES}", "data.batch_size=4", "model.size=tiny",
                             "model.cond_dropout=0.5"])
    stream = BatchStream(cfg.data, train=False)
    torch.manual_seed(0)
    model = build_model(cfg, FaceStats.from_normaliser(stream.dataset.normaliser)).eval()
    for p in model.unet.parameters():
        if p.dim() > 1 and not p.detach().any():
            torch.nn.init.normal_(p, std=0.05)
    torch.nn.init.normal_(model.unet.context.null_speaker, std=1.0)
    return cfg, model, next(iter(stream))


def test_guidance_scale_one_is_the_unguided_sampler_exactly(guided_setup):
    _, model, batch = guided_setup
    b = sub(batch, [0, 1])
    plain = run(model, b)
    assert torch.equal(run(model, b, guidance=1.0), plain)
    guided = run(model, b, guidance=2.0)
    assert guided.shape == plain.shape and not torch.allclose(guided, plain)


def test_guidance_is_none_plus_scale_times_the_difference(guided_setup):
    """w = 0 samples the unconditional model: the same as conditioning every window on the learned "no speaker"."""
    _, model, batch = guided_setup
    b = sub(batch, [0])
    unconditional = run(model, b, guidance=0.0)
    prepare = model.unet.prepare
    try:
        model.unet.prepare = lambda **c: prepare(**{**c, "drop": torch.ones(c["speaker_fv"].shape[0], dtype=bool)})
        dropped = run(model, b)
    finally:
        model.unet.prepare = prepare
    torch.testing.assert_close(unconditional, dropped, rtol=0, atol=1e-5)
    # and the speaker matters to the conditional model: another speaker, another reaction
    other = {**b, "speaker_fv": b["speaker_fv"].flip(1)}
    assert not torch.allclose(run(model, other), run(model, b))


def test_group_guidance_scales_each_groups_dims_and_equal_scales_are_the_plain_guidance(guided_setup):
    from reactdiff.sampling.online import _guided, guidance_scale

    _, model, batch = guided_setup
    b = sub(batch, [0])
    every = (("expression", 2.0), ("rotation", 2.0), ("translation", 2.0))
    assert torch.equal(run(model, b, guidance=1.0, group_guidance=every), run(model, b, guidance=2.0))
    assert torch.equal(run(model, b, group_guidance=(("rotation", 1.0),)), run(model, b))
    assert not torch.equal(run(model, b, group_guidance=(("rotation", 2.0),)), run(model, b))
    w = guidance_scale(1.5, (("rotation", 3.0),), dim=60)  # the emotion-like dims past 58 keep sample.guidance
    assert w.tolist() == [1.5] * 52 + [3.0] * 3 + [1.5] * 5
    cond, none = torch.randn(2, 4, 60), torch.randn(2, 4, 60)
    fake = lambda x, sigma, cache: cond if cache == "c" else none  # noqa: E731
    torch.testing.assert_close(_guided(fake, w)(cond, None, "c", "n"), none + w * (cond - none))
    with pytest.raises(ValueError, match="unknown groups"):
        guidance_scale(1.0, (("nose", 2.0),))
    with pytest.raises(config.ConfigError, match="group_guidance.rotation=2.0 needs a model trained with condition"):
        config.load(None, ["sample.group_guidance.rotation=2"])
    with pytest.raises(config.ConfigError, match=">= 0"):
        config.load(None, ["model.cond_dropout=0.1", "sample.group_guidance.expression=-1"])


def test_guidance_rescale_gives_each_group_the_conditional_spread_back(guided_setup):
    from reactdiff.sampling.online import _guided, guidance_scale, rescale_guided

    cond, none = torch.randn(3, 16, 60), torch.randn(3, 16, 60)
    w = guidance_scale(1.0, (("expression", 2.0), ("rotation", 1.5)), dim=60)
    guided = none + w * (cond - none)
    full = rescale_guided(guided, cond, 1.0)
    for dims in (slice(0, 52), slice(52, 55), slice(55, 58), slice(58, 60)):  # each group, each row on its own
        torch.testing.assert_close(full[..., dims].std(dim=(1, 2)), cond[..., dims].std(dim=(1, 2)))
        ratio = full[..., dims] / guided[..., dims]  # a scale per row and group: the guided direction kept
        torch.testing.assert_close(ratio, ratio[:, :1, :1].expand_as(ratio))
    torch.testing.assert_close(full[..., 55:58], guided[..., 55:58])  # translation unguided (w 1): nothing to undo
    half = rescale_guided(guided, cond, 0.5)
    torch.testing.assert_close(half, 0.5 * (full + guided))
    fake = lambda x, sigma, cache: cond if cache == "c" else none  # noqa: E731
    torch.testing.assert_close(_guided(fake, w, 0.7)(cond, None, "c", "n"), rescale_guided(guided, cond, 0.7))
    assert torch.equal(_guided(fake, w, 0.0)(cond, None, "c", "n"), guided)
    _, model, batch = guided_setup  # the sampler: 0 is plain guidance; otherwise other reactions
    b = sub(batch, [0])
    assert torch.equal(run(model, b, guidance=2.0, guidance_rescale=0.0), run(model, b, guidance=2.0))
    assert not torch.equal(run(model, b, guidance=2.0, guidance_rescale=1.0), run(model, b, guidance=2.0))
    with pytest.raises(config.ConfigError, match="guidance_rescale: in"):
        config.load(None, ["sample.guidance_rescale=1.5"])


def test_condition_dropout_only_in_training(guided_setup):
    cfg, model, batch = guided_setup
    train_batch = {**batch, "listener_fv": batch["listener_fv"][:, :40], "speaker_fv": batch["speaker_fv"][:, :40],
                   "speaker_feat": batch["speaker_feat"][:, :40], "valid": batch["valid"][:, :40]}
    losses = {}
    for mode, p in (("eval", 0.5), ("eval-no-dropout", 0.0), ("train", 0.5)):
        model.train(mode == "train")
        model.cond_dropout = p
        losses[mode] = model.training_loss(train_batch, 8, torch.Generator().manual_seed(1))["denoise"].item()
    model.eval()
    model.cond_dropout = 0.5
    assert losses["eval"] == losses["eval-no-dropout"]  # eval: no condition is ever dropped
    assert losses["train"] != losses["eval"]


def test_guidance_needs_a_model_with_an_unconditional_mode(setup, tiny_shards):
    _, model, batch = setup
    with pytest.raises(ValueError, match="no unconditional mode"):
        run(model, sub(batch, [0]), guidance=2.0)
    with pytest.raises(config.ConfigError, match="needs a model trained with condition dropout"):
        config.load(None, ["sample.guidance=2"])


def test_exports_made_before_new_defaults_load_and_sample_as_they_did(setup, tmp_path):
    """An export whose config.yaml predates the keys of LEGACY_DEFAULTS (kinematics, acceleration, condition
    dropout, spectral noise, anchor, aligned speaker) keeps the behaviour of its day, not today's defaults; its
    recorded sigma_data wins."""
    import yaml

    cfg, _, batch = setup
    old = config.load(None, [*(f"{k}={v}" for k, v in config.LEGACY_DEFAULTS.items()), "model.sigma_data=0.5",
                             f"data.shards={cfg.data.shards}", "model.size=tiny", "data.history=8"])
    torch.manual_seed(0)
    model = build_model(old).eval()
    save_export(tmp_path / "old", model, old, kind="test")
    doc = yaml.safe_load((tmp_path / "old/config.yaml").read_text())
    for key in config.LEGACY_DEFAULTS:  # a config of the day before these keys existed
        section, name = key.split(".")
        del doc[section][name]
    del doc["sample"]["guidance"]
    (tmp_path / "old/config.yaml").write_text(yaml.safe_dump(doc))
    loaded, cfg2, _ = load_export(tmp_path / "old")
    assert cfg2.model.kinematics.value == "raw_pose" and cfg2.model.acceleration_weight == 0
    assert cfg2.model.cond_dropout == 0 and cfg2.model.sigma_data == 0.5 and cfg2.sample.guidance == 1
    assert loaded.unet.context.null_speaker is None and loaded.priors.kinematics == "raw_pose"
    assert loaded.spectrum is None and not loaded.anchored and loaded.unet.aligned_norm is None
    torch.testing.assert_close(run(loaded, sub(batch, [0])), run(model, sub(batch, [0])), rtol=0, atol=0)


def test_the_aligned_speaker_reaches_the_window_frame_by_frame(tiny_shards):
    cfg = config.load(None, [f"data.shards={tiny_shards}", "data.history=8", "model.size=tiny",
                             "model.cond_dropout=0.2"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert cfg.model.aligned_speaker and model.unet.inp.in_channels == 58 + 58 + 80 + 58
    torch.nn.init.normal_(model.unet.out.weight, std=0.05)
    b, h, w = 2, 8, 16
    cond = {"speaker_fv": torch.randn(b, h + w, 58), "audio": torch.randn(b, h + w, 80),
            "past_listener": torch.zeros(b, h, 58), "valid": torch.ones(b, h + w, dtype=torch.bool)}
    cache = model.unet.prepare(**cond)
    assert cache["aligned"].shape == (b, w, 58 + 80 + 58)  # the window's own frames, not the history's
    x, sigma = torch.randn(b, w, 58), torch.full((b,), 1.0)
    base = model.denoise(x, sigma, cache=cache)
    later = {**cond, "speaker_fv": cond["speaker_fv"].clone()}
    later["speaker_fv"][:, h + 10] += 3.0  # a cue at window frame 10
    moved = (model.denoise(x, sigma, cache=model.unet.prepare(**later)) - base).abs().sum(-1)
    assert moved[:, 10].min() > 0 and moved[:, 0].max() < moved[:, 10].min()  # local effect (conv receptive field)
    dropped = model.unet.prepare(**cond, drop=torch.tensor([True, False]))
    assert (dropped["aligned"][0, :, :138] == 0).all() and torch.equal(dropped["aligned"][1], cache["aligned"][1])
    assert torch.equal(dropped["aligned"][0, :, 138:], cache["aligned"][0, :, 138:])  # the listener's past stays


def test_temperature_one_is_the_plain_sampler_and_lower_is_less_diverse(setup):
    _, model, batch = setup
    b = sub(batch, [0])
    plain = run(model, b)
    assert torch.equal(run(model, b, temperature=1.0), plain)
    cold = run(model, b, temperature=0.3)
    spread = lambda y: float(y.std(dim=1).mean())  # noqa: E731 - across the K reactions
    assert spread(cold) < spread(plain)


def test_a_folder_sampled_at_another_temperature_is_refused(tiny_shards, tmp_path, capsys):
    args = ["--random-init", "--shards", str(tiny_shards), "--out", str(tmp_path / "out"), "--quiet", "--limit", "1",
            "model.size=tiny", "data.history=8", f"data.eval_frames={FRAMES}", "sample.window=32",
            "sample.steps=2", "sample.k=1"]
    assert sample_main(args + ["sample.temperature=0.5"]) == 0
    assert load_manifest(tmp_path / "out")["settings"]["temperature"] == 0.5
    assert sample_main(args) == 2  # the default temperature (0.85) into the same folder: refused
    assert "temperature: 0.5 -> 0.85" in capsys.readouterr().err
    assert sample_main(args + ["sample.temperature=1", "--overwrite"]) == 0  # 1: not recorded, and still refused
    assert "temperature" not in load_manifest(tmp_path / "out")["settings"]
    assert sample_main(args + ["sample.temperature=0.5"]) == 2  # a key the new settings lack still counts
    assert "temperature: None -> 0.5" in capsys.readouterr().err
    capsys.readouterr()
    guided = args + ["model.cond_dropout=0.1", "sample.group_guidance.rotation=2", "--overwrite"]
    assert sample_main(guided) == 0
    assert load_manifest(tmp_path / "out")["settings"]["group_guidance"] == {"rotation": 2.0}
    assert "(4 network evaluations per window)" in capsys.readouterr().out  # 2 steps, each also unconditional
    assert sample_main(args + ["sample.temperature=1", "--overwrite"]) == 0
    assert "(2 network evaluations per window)" in capsys.readouterr().out


def test_an_export_reads_the_shards_with_its_own_statistics(tiny_shards, tmp_path, capsys):
    common = ["--random-init", "--quiet", "model.size=tiny", "data.history=8", f"data.eval_frames={FRAMES}",
              "sample.window=32", "sample.steps=2", "sample.k=2", "--limit", "2"]
    assert sample_main([*common, "--shards", str(tiny_shards), "--out", str(tmp_path / "ref")]) == 0
    model, cfg, _ = load_export(tmp_path / "ref/export")  # random init, with the shards' statistics as buffers
    torch.manual_seed(0)
    with torch.no_grad():  # an untrained output layer is zero: make the reactions depend on the speaker
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    export = save_export(tmp_path / "export", model, cfg, kind="test")
    moved = tmp_path / "moved"  # the same clips, but a shard folder whose mean/std say something else
    shutil.copytree(tiny_shards, moved)
    np.save(moved / "mean_face.npy", np.load(tiny_shards / "mean_face.npy") + 0.5)
    np.save(moved / "std_face.npy", np.load(tiny_shards / "std_face.npy") * 2)
    args = ["--export", str(export), "data.eval_frames=120", "sample.window=32", "sample.steps=2", "sample.k=2",
            "--limit", "2"]
    assert sample_main([*args, "--shards", str(moved), "--out", str(tmp_path / "a")]) == 0
    assert "its mean/std differ from the export's" in capsys.readouterr().out
    assert sample_main([*args, "--shards", str(tiny_shards), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    for row in (0, 6):  # the inputs were normalised with the export's statistics: the shard folder's do not matter
        assert np.array_equal(np.load(reaction_path(tmp_path / "a", row)), np.load(reaction_path(tmp_path / "b", row)))


def test_the_speaker_filter_is_causal_and_reaches_into_the_history(tiny_shards):
    cfg = config.load(None, [f"data.shards={tiny_shards}", "data.history=8", "model.size=tiny",
                             "model.speaker_filter=6"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    b, h, w = 2, 8, 16
    cond = {"speaker_fv": torch.randn(b, h + w, 58), "audio": torch.randn(b, h + w, 80),
            "past_listener": torch.zeros(b, h, 58), "valid": torch.ones(b, h + w, dtype=torch.bool)}
    base = model.unet.prepare(**cond)["aligned"]
    assert base.shape == (b, w, 32 + 58)  # the filter's channels (ch[0] of the tiny U-Net), then the last frame

    def moved_by(frame):  # which window frames' aligned inputs a speaker cue at `frame` (of [history, window]) moves
        cue = {**cond, "speaker_fv": cond["speaker_fv"].clone()}
        cue["speaker_fv"][:, frame] += 3.0
        return (model.unet.prepare(**cue)["aligned"] - base).abs().sum((0, 2)) > 0

    assert moved_by(h + 5).tolist() == [False] * 5 + [True] * 6 + [False] * 5  # frames 5..10: causal, 6 taps
    assert moved_by(h - 3).tolist() == [True] * 3 + [False] * 13  # a cue in the history reaches the window start
    assert not moved_by(h - 6).any()  # beyond the filter's reach
    with pytest.raises(config.ConfigError, match="data.history >= 8"):
        config.load(None, [f"data.shards={tiny_shards}", "data.history=4", "model.speaker_filter=9"])
    with pytest.raises(config.ConfigError, match="aligned_speaker"):
        config.load(None, ["model.aligned_speaker=false", "model.speaker_filter=4"])


def test_the_level_temperature_scales_only_each_window_level(setup):
    from reactdiff.model.spectrum import dct_matrix
    from reactdiff.sampling.online import WindowSampler

    _, model, batch = setup
    step = WindowSampler(model, sampler="euler", steps=2, temperature=0.8, level_temperature=0.2)
    noise = torch.randn(3, 32, model.dim)
    c = dct_matrix(32)
    before, after = (torch.einsum("kt,btd->bkd", c, x) for x in (noise, step._cool(noise)))
    torch.testing.assert_close(after[:, 0], 0.2 * before[:, 0])
    torch.testing.assert_close(after[:, 1:], 0.8 * before[:, 1:])
    b = sub(batch, [0])
    torch.testing.assert_close(run(model, b, temperature=0.6, level_temperature=0.6), run(model, b, temperature=0.6),
                               rtol=1e-4, atol=1e-4)
    level = lambda y: float(y.mean(dim=2).std(dim=1).mean())  # noqa: E731 - spread of the clip mean across K
    assert level(run(model, b, temperature=0.6, level_temperature=0.0)) < level(run(model, b, temperature=0.6))


def test_window_settings_map_every_sampler_setting_from_the_config_once():
    """`reactdiff sample`, the in-training previews and the live sessions all build their sampler from
    window_settings: it covers every setting WindowSampler takes (a new one that it misses fails here), carries the
    config's values and lets single values be replaced, and refuses a name that is no setting."""
    import inspect

    from reactdiff.sampling.online import WindowSampler, window_settings

    cfg = config.load(config.packaged("quality"), ["sample.guidance_rescale=0.5", "sample.steps=7"])
    got = window_settings(cfg.sample)
    takes = set(inspect.signature(WindowSampler).parameters) - {"model", "device"}
    assert set(got) == takes
    assert (got["sampler"], got["steps"], got["guidance_rescale"]) == ("dpmpp_2m", 7, 0.5)
    assert dict(got["group_guidance"]) == {"rotation": 1.75, "expression": 1.25}
    assert window_settings(cfg.sample, steps=3)["steps"] == 3
    with pytest.raises(TypeError, match="no sampling setting"):
        window_settings(cfg.sample, step=3)


def test_inpaint_holds_the_frames_an_earlier_window_made(setup):
    """sample.join=inpaint: a window is sampled with the frames it shares with the window before held at that
    window's values (the ODE ends on them, the rest of the window is sampled to agree with them); crossfade samples
    it from the past alone. The first window holds nothing (the same frames either way); rows holding different
    numbers of frames share a call (live sessions in one batch) as they would alone."""
    from reactdiff.sampling.noise import per_sample_generators
    from reactdiff.sampling.online import WindowSampler, window_condition

    _, model, batch = setup
    b = sub(batch, [0])
    cross, held = run(model, b), run(model, b, join="inpaint")
    assert torch.equal(held[:, :, :24], cross[:, :, :24]) and not torch.allclose(held[:, :, 24:], cross[:, :, 24:])
    assert torch.isfinite(held).all()

    speaker = b["speaker_fv"][:, :FRAMES].float().repeat(2, 1, 1)
    audio = model.audio(b, b["speaker_fv"].shape[1])[:, :FRAMES].repeat(2, 1, 1)
    valid = torch.ones(2, FRAMES, dtype=torch.bool)
    out = torch.randn(2, FRAMES, model.dim) * 0.1  # frames [0, 32) "generated" by a first window
    samplers = {j: WindowSampler(model, sampler="dpmpp_2m", steps=4, join=j) for j in ("crossfade", "inpaint")}
    gens = lambda: per_sample_generators([7, 8])  # noqa: E731
    cond = window_condition(model, speaker, audio, out, valid, 24, 8, 32, done=32)
    assert cond["held_mask"][:, :8].all() and not cond["held_mask"][:, 8:].any()
    new = samplers["inpaint"](cond, gens(), 32)
    torch.testing.assert_close(new[:, :8], out[:, 24:32], rtol=0, atol=1e-5)
    free = samplers["crossfade"](window_condition(model, speaker, audio, out, valid, 24, 8, 32, done=32), gens(), 32)
    assert (new[:, :8] - out[:, 24:32]).abs().max() < 1e-3 * (free[:, :8] - out[:, 24:32]).abs().max()
    # row 0 holds 8 frames, row 1 none (a session at its first window), in one call and alone
    mixed = window_condition(model, speaker, audio, out, valid, 24, 8, 32, done=32)
    mixed["held_mask"][1] = False
    together = samplers["inpaint"](mixed, gens(), 32)
    row1 = {k: (v[1:] if isinstance(v, torch.Tensor) else v) for k, v in mixed.items()}
    torch.testing.assert_close(together[1:], samplers["crossfade"](row1, per_sample_generators([8]), 32),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(together[:1], new[:1], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="join: one of \\['crossfade', 'inpaint'\\]"):
        WindowSampler(model, sampler="euler", steps=2, join="blend")
