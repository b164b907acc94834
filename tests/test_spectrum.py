"""Noise with the data's temporal spectrum: the DCT, colour/whiten, the fit from shards, the loss, and samples."""
import numpy as np
import pytest
import torch

from reactdiff import config
from reactdiff.data.reader import listener_windows
from reactdiff.model.export import build_model
from reactdiff.model.spectrum import TemporalSpectrum, dct_matrix, window_rms
from conftest import assert_denoise_loss_is


def test_dct_is_orthonormal_and_is_the_dct_ii():
    c = dct_matrix(12, dtype=torch.float64)
    torch.testing.assert_close(c @ c.T, torch.eye(12, dtype=torch.float64))
    x = np.random.default_rng(0).normal(size=12)
    k, n = 3, np.arange(12)
    expected = np.sqrt(2 / 12) * np.sum(x * np.cos(np.pi / 12 * (n + 0.5) * k))
    assert (c @ torch.from_numpy(x))[k].item() == pytest.approx(expected)


def test_colour_and_whiten_before_and_after_the_fit():
    spec = TemporalSpectrum(16, 3, sigma_data=1.0)
    eps = torch.randn(2000, 16, 3, dtype=torch.float64)
    torch.testing.assert_close(spec.colour(eps), eps)  # unfitted: white
    t = torch.arange(16.0).view(1, 16, 1)
    smooth = torch.sin(2 * np.pi * t / 16 * torch.rand(500, 1, 3) * 2 + torch.rand(500, 1, 3) * 6)
    spec.fit(smooth.numpy())
    rms = torch.from_numpy(window_rms(smooth.numpy()))
    coloured = spec.colour(eps.float()).double()
    coef = torch.einsum("kt,ntd->nkd", dct_matrix(16, dtype=torch.float64), coloured)
    torch.testing.assert_close(coef.square().mean(0).sqrt(), rms.float().double(), rtol=0.1, atol=1e-3)  # data's RMS
    whitened = spec.whiten(coloured.float())
    torch.testing.assert_close(whitened.std(), torch.tensor(1.0), rtol=0.03, atol=0)
    # another window length: the spectrum is interpolated over normalised frequency
    assert spec.scale(8, "cpu", torch.float32).shape == (8, 3)
    with pytest.raises(ValueError, match=r"\(N, 16, 3\)"):
        spec.fit(np.zeros((4, 8, 3)))


def test_the_spectrum_comes_from_the_shards_and_the_loss_is_whitened(tiny_shards):
    cfg = config.load(None, ["model.size=tiny", "data.history=8", "data.window=32", f"data.shards={tiny_shards}"])
    windows = listener_windows(cfg.data, 32, clips=4)
    assert windows.shape[1:] == (32, 58) and np.array_equal(windows, listener_windows(cfg.data, 32, clips=4))
    model = build_model(cfg)
    model.spectrum.fit(windows)
    assert "spectrum.rms" in model.state_dict()  # saved with the weights (exports, checkpoints)
    b, h, w = 3, 8, 32
    g = torch.Generator().manual_seed(0)
    batch = {"speaker_fv": torch.randn(b, h + w, 58, generator=g),
             "listener_fv": torch.randn(b, h + w, 58, generator=g),
             "speaker_feat": torch.randn(b, h + w, 80, generator=g), "valid": torch.ones(b, h + w, dtype=torch.bool)}
    x0 = batch["listener_fv"][:, h:]
    sigma = torch.tensor([0.1, 1.0, 5.0])
    noise = model.colour_noise(torch.randn(b, w, 58, generator=g))
    cond = model.condition(batch, batch["listener_fv"][:, :h])
    per_sample, x0_hat = model.denoiser.loss(x0, sigma, noise, whiten=model.spectrum.whiten, **cond)
    coef = torch.einsum("kt,btd->bkd", dct_matrix(w), x0_hat - x0) / (model.spectrum.rms / 1.0)
    lam = (sigma ** 2 + 1) / sigma ** 2
    torch.testing.assert_close(per_sample, coef.square().mean((1, 2)) * lam, rtol=1e-5, atol=0)


def test_an_untrained_model_samples_the_data_spectrum(tiny_shards, tmp_path):
    """Zero output layer: D = c_skip x is the exact denoiser of N(0, sigma_data^2) in whitened coordinates, so the
    samples are noise with the data's spectrum: frame-to-frame motion like the data's, not white noise's."""
    from reactdiff.sampling.online import generate

    cfg = config.load(None, ["model.size=tiny", "data.history=8", "data.window=32", f"data.shards={tiny_shards}"])
    windows = listener_windows(cfg.data, 32, clips=6)
    model = build_model(cfg).eval()
    model.spectrum.fit(windows)
    batch = {"speaker_fv": torch.zeros(2, 120, 58), "speaker_feat": torch.zeros(2, 120, 80), "key": ["x", "y"],
             "role": ["a", "b"]}
    y = generate(model, batch, k=8, history=8, window=32, overlap=0, sampler="dpmpp_2m", steps=6)
    jitter = lambda v: float(np.abs(np.diff(np.asarray(v), axis=-2)).mean())  # noqa: E731
    data = jitter(windows)
    assert 0.6 * data < jitter(y) < 1.6 * data, (jitter(y), data)  # white noise of the same std: ~7x the data's


def test_windows_are_denoised_relative_to_the_last_known_frame(tiny_shards):
    cfg = config.load(None, ["model.size=tiny", "data.history=8", "data.window=32", f"data.shards={tiny_shards}",
                             "model.anchor=last_frame"])
    model = build_model(cfg)
    assert model.anchored
    past = torch.randn(3, 8, 58)
    torch.testing.assert_close(model.anchor(past, 32), past[:, -1:])
    assert torch.equal(model.anchor(torch.zeros(3, 0, 58), 32), torch.zeros(3, 1, 58))  # no history: the mean face
    # the spectrum is measured on the same relative windows: each minus the frame before it
    absolute = listener_windows(cfg.data, 32, clips=2)
    relative = listener_windows(cfg.data, 32, clips=2, relative=True)
    np.testing.assert_allclose(relative[0], absolute[0])  # the clip's first window: relative to 0
    assert np.abs(relative[1:]).mean() < np.abs(absolute[1:]).mean()
    # the loss: the denoiser sees x0 - anchor, the priors the absolute estimate
    assert_denoise_loss_is(model, lambda x, h: x[:, h - 1:h], model.spectrum.whiten)


def test_loss_weight_power_moves_the_loss_from_whitened_to_frames():
    spec = TemporalSpectrum(8, 2, sigma_data=1.0)
    spec.rms.copy_(torch.linspace(3.0, 0.1, 8)[:, None].expand(8, 2))
    err = torch.randn(500, 8, 2, dtype=torch.float64)
    torch.testing.assert_close(spec.loss_coordinates(err.float()), spec.whiten(err.float()))  # p = 0: whitened
    spec.loss_weight_power = 2.0  # p = 2: the per-frame MSE (over the dim's mean coefficient power)
    frames = err.square().mean() / spec.rms.double().square().mean(0)
    torch.testing.assert_close(spec.loss_coordinates(err.float()).double().square().mean(), frames.mean(), rtol=1e-5,
                               atol=0)


def test_loss_group_weight_scales_each_groups_share_of_the_loss_and_defaults_to_none():
    from reactdiff.model.reactdiff import group_loss_scale

    assert torch.equal(group_loss_scale(58, {}), torch.ones(58))
    scale = group_loss_scale(83, {"rotation": 8.0, "expression": 1.0})  # 58-d + the 25-d emotion stream
    w = scale.square()
    assert w.mean().item() == pytest.approx(1.0)  # the loss keeps its scale
    assert torch.allclose(w[52:55] / w[0], torch.full((3,), 8.0)) and torch.allclose(w[55:] / w[0], torch.ones(28))
    with pytest.raises(ValueError, match="pitch"):
        group_loss_scale(58, {"pitch": 2.0})
    # in the model: an error on the rotation dims alone costs 8 / mean(w) of what it costs unweighted
    base = build_model(config.load(None, ["model.size=tiny"]))
    heavy = build_model(config.load(None, ["model.size=tiny", "model.loss_group_weight.rotation=8"]))
    torch.testing.assert_close(base.loss_coordinates(torch.ones(2, 16, 58)), base.spectrum.loss_coordinates(
        torch.ones(2, 16, 58)))  # all 1: exactly the spectrum's coordinates
    err = torch.zeros(2, 16, 58)
    err[..., 53] = torch.randn(2, 16)
    ratio = heavy.loss_coordinates(err).square().mean() / base.loss_coordinates(err).square().mean()
    assert ratio.item() == pytest.approx(8 / ((55 + 3 * 8) / 58), rel=1e-5)
    assert "loss_dim_scale" not in heavy.state_dict()  # exports of either load into the other
    assert_denoise_loss_is(heavy, lambda x, h: heavy.anchor(x[:, :h], x.shape[1] - h, None), heavy.loss_coordinates)


def test_loss_band_weights_one_groups_dct_band_and_is_off_by_default():
    from reactdiff.model.reactdiff import band_loss_scale
    from reactdiff.model.spectrum import band_coefficients

    # 64 frames at 25 fps: coefficient k is k * 0.195 Hz, so 1.5-2.6 Hz holds k = 8..13
    assert band_coefficients(64, 25, 1.5, 2.6).nonzero().flatten().tolist() == list(range(8, 14))
    assert band_coefficients(32, 25, 1.5, 2.6).nonzero().flatten().tolist() == [4, 5, 6]
    base = build_model(config.load(None, ["model.size=tiny"]))
    assert base.loss_band is None  # the default (weight 1) is exactly the model without it
    band = {"group": "rotation", "low_hz": 1.5, "high_hz": 2.6, "fps": 25.0, "weight": 16.0}
    w = band_loss_scale(64, 58, band).square()
    assert w.mean().item() == pytest.approx(1.0)  # the loss keeps its scale
    ratio = w / w[0, 0]
    assert torch.allclose(ratio[8:14, 52:55], torch.full((6, 3), 16.0))
    assert torch.equal(ratio[8:14, :52], torch.ones(6, 52)) and torch.equal(ratio[8:14, 55:], torch.ones(6, 3))
    assert torch.equal(ratio[:8], torch.ones(8, 58)) and torch.equal(ratio[14:], torch.ones(50, 58))
    # one head-rotation channel: head pitch (dim 52, where nods are) alone
    pitch = band_loss_scale(64, 58, band | {"group": "pitch"}).square()
    assert pitch.mean().item() == pytest.approx(1.0)
    ratio = pitch / pitch[0, 0]
    assert torch.allclose(ratio[8:14, 52], torch.full((6,), 16.0))
    assert torch.equal(ratio[8:14, 53:], torch.ones(6, 5)) and torch.equal(ratio[8:14, :52], torch.ones(6, 52))
    with pytest.raises(ValueError, match="unknown group 'nose'"):
        band_loss_scale(64, 58, band | {"group": "nose"})
    with pytest.raises(ValueError, match="holds no DCT coefficient"):
        band_loss_scale(8, 58, band | {"low_hz": 2.0, "high_hz": 2.5})
    # in the model: an error in the band on a rotation dim costs 16x what the same error costs outside it
    heavy = build_model(config.load(None, ["model.size=tiny", "model.loss_band.weight=16"]))
    c = dct_matrix(64)
    inside, outside = torch.zeros(1, 64, 58), torch.zeros(1, 64, 58)
    inside[0, :, 53], outside[0, :, 53] = c[10], c[20]  # one DCT coefficient each, in and out of the band
    def cost(err):  # relative to the unweighted model
        return (heavy.loss_coordinates(err).square().sum() / base.loss_coordinates(err).square().sum()).item()

    assert cost(inside) / cost(outside) == pytest.approx(16.0, rel=1e-5)
    assert "loss_band" not in " ".join(heavy.state_dict())  # exports of either load into the other
    assert_denoise_loss_is(heavy, lambda x, h: heavy.anchor(x[:, :h], x.shape[1] - h, None), heavy.loss_coordinates,
                           w=64)
