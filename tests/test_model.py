"""The ReactDiff model: preconditioning, U-Net shapes, attention, dropout, training signal, audio frontends."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reactdiff import config
from reactdiff.data.reader import BatchStream
from reactdiff.model.denoiser import SigmaDensity, loss_weight, preconditioning
from reactdiff.model.layers import Attention, FourierEmbedding
from reactdiff.data.normalise import FaceStats
from reactdiff.model.reactdiff import ReactDiff
from reactdiff.model.unet import PRESETS, TemporalUNet


def tiny_cfg(shards, *extra):
    return config.load(None, [f"data.shards={shards}", "data.window=16", "data.history=8", "data.batch_size=4",
                              "data.num_workers=0", "model.size=tiny", *extra])


def make_model(cfg, shards_stream):
    torch.manual_seed(0)
    return ReactDiff.from_config(cfg.model, FaceStats.from_normaliser(shards_stream.dataset.normaliser))


def randomise_output(model):
    """Output layers start at zero (D = c_skip x, residual branches off); give them weights so tests see them."""
    for p in model.unet.parameters():
        if p.dim() > 1 and not p.detach().any():
            torch.nn.init.normal_(p, std=0.05)


def test_preconditioning_matches_the_closed_form():
    sigma = torch.tensor([0.002, 0.5, 3.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = preconditioning(sigma, 0.5)
    for i, s in enumerate(sigma.tolist()):
        assert c_skip[i].item() == pytest.approx(0.25 / (s * s + 0.25))
        assert c_out[i].item() == pytest.approx(s * 0.5 / math.sqrt(s * s + 0.25))
        assert c_in[i].item() == pytest.approx(1 / math.sqrt(s * s + 0.25))
        assert c_noise[i].item() == pytest.approx(math.log(s) / 4)
    torch.testing.assert_close(loss_weight(sigma, 0.5), 1 / c_out ** 2)  # EDM's lambda = 1 / c_out^2


def test_denoiser_is_exact_as_sigma_goes_to_zero(tiny_shards):
    cfg = tiny_cfg(tiny_shards)
    stream = BatchStream(cfg.data)
    model = make_model(cfg, stream)
    randomise_output(model)
    batch = next(iter(stream))
    x = model.listener_stream(batch)[:, 8:]
    cond = model.condition(batch, model.listener_stream(batch)[:, :8])
    errs = [(model.denoise(x, torch.full((4,), s), **cond) - x).abs().max().item() for s in (1e-1, 1e-3, 1e-5)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-4


def test_sigma_densities():
    g = torch.Generator().manual_seed(0)
    s = SigmaDensity("lognormal", p_mean=-1.2, p_std=1.2).sample(20000, generator=g)
    assert s.log().mean().item() == pytest.approx(-1.2, abs=0.05)
    assert s.log().std().item() == pytest.approx(1.2, abs=0.05)
    c = SigmaDensity("cosine", sigma_data=0.5, sigma_min=0.01, sigma_max=80).sample(20000, generator=g)
    assert c.min() >= 0.01 and c.max() <= 80
    # half the mass of the (untruncated-looking) cosine density lies below sigma_data
    assert (c < 0.5).float().mean().item() == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="lognormal or cosine"):
        SigmaDensity("uniform")


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_unet_shapes_for_odd_lengths_and_emotion(size):
    net = TemporalUNet(83, 83, 58, 80, PRESETS[size])
    b, w, h = 3, 37, 11
    y = net(torch.randn(b, w, 83), torch.randn(b), speaker_fv=torch.randn(b, h + w, 58),
            audio=torch.randn(b, h + w, 80), past_listener=torch.randn(b, h, 83),
            valid=torch.ones(b, h + w, dtype=torch.bool))
    assert y.shape == (b, w, 83) and y.dtype == torch.float32


def test_paper_size():
    net = TemporalUNet(58, 58, 58, 768, PRESETS["paper"])
    n = sum(p.numel() for p in net.parameters())
    print(f"paper config: {n:,} parameters")
    assert 45e6 < n < 50e6


def test_attention_matches_a_per_head_reference():
    torch.manual_seed(0)
    att = Attention(16, heads=4, context_dim=8)
    torch.nn.init.normal_(att.out.weight, std=0.3)
    x, ctx = torch.randn(2, 16, 5), torch.randn(2, 7, 8)
    times, ctx_times = torch.arange(5.0), torch.arange(7.0).expand(2, 7) - 2
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, :3] = False
    got = att(x, times, att.context_kv(ctx, ctx_times), mask)
    from reactdiff.model.layers import sinusoidal_positions as sp

    h = att.norm(x).transpose(1, 2) + sp(times, 16)[None]
    q = att.q(h)
    k, v = att.kv(att.kv_norm(ctx)).chunk(2, -1)
    k = k + sp(ctx_times, 16)
    want = torch.zeros(2, 5, 16)
    for b in range(2):
        for head in range(4):
            sl = slice(4 * head, 4 * head + 4)
            scores = q[b, :, sl] @ k[b, :, sl].T / 2.0
            scores[:, ~mask[b]] = -float("inf")
            want[b, :, sl] = scores.softmax(-1) @ v[b, :, sl]
    want = x + att.out(want).transpose(1, 2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training(tiny_shards):
    cfg = tiny_cfg(tiny_shards, "model.dropout=0.5")
    stream = BatchStream(cfg.data)
    model = make_model(cfg, stream)
    randomise_output(model)
    batch = next(iter(stream))
    x, past = model.listener_stream(batch)[:, 8:], model.listener_stream(batch)[:, :8]
    sigma = torch.full((4,), 1.0)
    model.eval()
    with torch.no_grad():
        a = model.denoise(x, sigma, **model.condition(batch, past))
        b = model.denoise(x, sigma, **model.condition(batch, past))
    assert torch.equal(a, b)
    model.train()
    with torch.no_grad():
        c = model.denoise(x, sigma, **model.condition(batch, past))
    assert not torch.allclose(a, c)


def test_sigma_embedding_is_continuous():
    emb = FourierEmbedding(32)
    sig = torch.tensor([0.01, 0.02, 0.5, 0.51, 80.0]).log() / 4
    e = emb(sig)
    assert len({tuple(r) for r in e.round(decimals=4).tolist()}) == 5  # no two noise levels collapse


def test_overfitting_one_batch_drives_the_loss_down(tiny_shards):
    cfg = tiny_cfg(tiny_shards)
    stream = BatchStream(cfg.data)
    model = make_model(cfg, stream)
    batch = next(iter(stream))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(150):
        out = model.training_loss(batch, history=8, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert {"denoise", "velocity", "au_symmetric", "au_cooccur", "au_exclusive", "prior_total"} <= out.keys()
    assert losses[-1] < 0.25 * losses[0], (losses[0], losses[-1])


def test_half_precision_model_runs_in_its_dtype(tiny_shards):
    """DeepSpeed's bf16 engine casts the parameters (not the buffers, not the inputs): every fp32 tensor the model
    makes (positional and noise encodings) must follow the compute dtype, or the next layer norm/linear fails."""
    cfg = tiny_cfg(tiny_shards)
    stream = BatchStream(cfg.data)
    model = make_model(cfg, stream)
    randomise_output(model)
    batch = next(iter(stream))
    ref = model.training_loss(batch, history=8, generator=torch.Generator().manual_seed(0))
    for p in model.parameters():  # what DeepSpeed's _cast_module_mixed_precision does
        p.data = p.data.to(torch.bfloat16)
    out = model.training_loss(batch, history=8, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert all(p.grad is None or p.grad.dtype == torch.bfloat16 for p in model.parameters())
    assert torch.isfinite(out["loss"]) and out["loss"].item() == pytest.approx(ref["loss"].item(), rel=0.1)
    x = model.listener_stream(batch)[:, 8:].to(torch.bfloat16)
    cond = model.condition(batch, model.listener_stream(batch)[:, :8])
    assert model.denoise(x, torch.full((4,), 0.5), **cond).dtype == torch.bfloat16


def test_wav2vec2_and_logmel_frontends(tiny_shards, tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    w2v = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    Wav2Vec2Model(w2v).save_pretrained(tmp_path / "w2v")
    for spec, dim in ((f"wav2vec2:{tmp_path / 'w2v'}", 32), ("logmel", 80)):
        cfg = tiny_cfg(tiny_shards, "data.audio=raw", f"model.audio={spec}")
        stream = BatchStream(cfg.data)
        model = make_model(cfg, stream)
        batch = next(iter(stream))
        feats = model.audio(batch, 24)
        assert feats.shape == (4, 24, dim) and torch.isfinite(feats).all()
        out = model.training_loss(batch, history=8)
        out["loss"].backward()
        assert all(p.grad is None for p in model.audio.parameters())  # the frontend stays frozen
    with pytest.raises(config.ConfigError, match="needs data.audio=raw"):
        config.check_model_data(tiny_cfg(tiny_shards, "model.audio=logmel"))


def test_feature_width_mismatch_is_explained(tiny_shards):
    cfg = tiny_cfg(tiny_shards, "model.audio_dim=768")
    stream = BatchStream(cfg.data)
    model = make_model(cfg, stream)
    with pytest.raises(ValueError, match="80 dims; model.audio_dim is 768"):
        model.training_loss(next(iter(stream)), history=8)


def film_cond(b=2, h=11, w=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"speaker_fv": torch.randn(b, h + w, 58, generator=g), "audio": torch.randn(b, h + w, 80, generator=g),
            "past_listener": torch.randn(b, h, 58, generator=g), "valid": torch.ones(b, h + w, dtype=torch.bool)}


def test_stream_norm_hands_the_speaker_face_to_the_filter_unscaled_by_the_audio():
    """model.aligned_norm=stream: the speaker's 3DMM reaches the aligned input as the data's normalisation left it,
    whatever is said over it; `frame` (one LayerNorm over face and audio) moves every face channel with the audio's
    per-frame level and spread (measured on synthetic data: the speaker's smile velocity after it correlates 0.13 with
    the smile's own)."""
    torch.manual_seed(0)
    cond = film_cond()
    louder = {**cond, "audio": cond["audio"] * 3.0 + torch.linspace(-5, 5, 48).view(1, -1, 1)}  # same face
    faces = {}
    for kind in ("stream", "frame"):
        net = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], aligned_speaker=True, aligned_norm=kind)
        quiet, loud = (net.prepare(**c)["aligned"][..., :58] for c in (cond, louder))  # no filter: the window's frames
        faces[kind] = (quiet, loud)
        audio = net.prepare(**cond)["aligned"][..., 58:138]
        if kind == "stream":
            torch.testing.assert_close(audio, F.layer_norm(cond["audio"][:, 11:], (80,)))  # the audio on its own
    torch.testing.assert_close(faces["stream"][0], cond["speaker_fv"][:, 11:], rtol=0, atol=0)
    torch.testing.assert_close(faces["stream"][1], cond["speaker_fv"][:, 11:], rtol=0, atol=0)
    assert (faces["frame"][0] - faces["frame"][1]).abs().mean() > 0.1
    # face_and_frame: the face as it is, then frame's channels (its LayerNorm: the same parameter names)
    frame = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], aligned_speaker=True, aligned_norm="frame")
    both = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], aligned_speaker=True, aligned_norm="face_and_frame")
    assert both.aligned_norm.state_dict().keys() == frame.aligned_norm.state_dict().keys()
    aligned = both.prepare(**louder)["aligned"]
    torch.testing.assert_close(aligned[..., :58], cond["speaker_fv"][:, 11:], rtol=0, atol=0)
    torch.testing.assert_close(aligned[..., 58:196], frame.prepare(**louder)["aligned"][..., :138])
    from reactdiff.model.unet import SPEAKER_NORMS
    assert list(SPEAKER_NORMS) == [k.value for k in config.AlignedNorm]  # the schema's choices are the model's
    with pytest.raises(config.ConfigError, match="aligned_norm"):
        config.load(None, ["model.aligned_norm=channel"])
    with pytest.raises(ValueError, match="aligned_norm"):
        TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], aligned_speaker=True, aligned_norm="channel")


@pytest.mark.parametrize("size,lengths", [("tiny", [19, 37]), ("small", [10, 19, 37])])
def test_speaker_film_starts_as_the_model_without_it(size, lengths):
    torch.manual_seed(0)
    kw = {"aligned_speaker": True, "speaker_filter": 4, "null_speaker": True}
    plain = TemporalUNet(58, 58, 58, 80, PRESETS[size], **kw)
    with torch.no_grad():  # every residual branch and output layer switched on
        for p in plain.parameters():
            p.add_(0.05 * torch.randn_like(p))
    film = TemporalUNet(58, 58, 58, 80, PRESETS[size], speaker_film=True, **kw)
    new = film.load_state_dict(plain.state_dict(), strict=False)
    assert not new.unexpected_keys and new.missing_keys and all("film" in k for k in new.missing_keys)
    cond, x, c = film_cond(), torch.randn(2, 37, 58), torch.randn(2)
    cache = film.prepare(**cond)
    assert sorted(cache["film"]) == lengths  # one condition per U-Net resolution (odd lengths: ceil(L / 2))
    assert all(f.shape == (2, PRESETS[size].channels[0], n) for n, f in cache["film"].items())
    torch.testing.assert_close(film(x, c, cache=cache), plain(x, c, **cond), rtol=0, atol=0)  # zero-initialised
    with torch.no_grad():
        for name, p in film.named_parameters():
            if "film" in name:
                p.add_(0.1 * torch.randn_like(p))
    assert (film(x, c, **cond) - plain(x, c, **cond)).abs().max() > 1e-3


def test_speaker_film_is_frame_aligned_and_off_in_the_unconditional_mode():
    torch.manual_seed(0)
    net = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], aligned_speaker=True, speaker_filter=4, null_speaker=True,
                       speaker_film=True)
    cond = film_cond()
    base = net.prepare(**cond)["film"][37]
    cue = {**cond, "speaker_fv": cond["speaker_fv"].clone()}
    cue["speaker_fv"][:, 11 + 5] += 3.0  # a speaker cue at window frame 5 moves the gain at frames 5..8 only
    moved = (net.prepare(**cue)["film"][37] - base).abs().sum((0, 1)) > 0
    assert moved.tolist() == [False] * 5 + [True] * 4 + [False] * 28
    other = film_cond(seed=1)
    other["past_listener"] = cond["past_listener"]
    drop = torch.ones(2, dtype=torch.bool)  # the unconditional mode: the gain sees the listener's last frame only
    torch.testing.assert_close(net.prepare(**cond, drop=drop)["film"][37], net.prepare(**other, drop=drop)["film"][37])
    with pytest.raises(config.ConfigError, match="aligned_speaker"):
        config.load(None, ["model.aligned_speaker=false", "model.speaker_film=true"])
    with pytest.raises(ValueError, match="aligned_speaker"):
        TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], speaker_film=True)
