"""Noise with the data's full temporal covariance (model.noise=covariance): colour / whiten, the loss, its float64
buffer, the fit from shards, and the window's first frames it was made for."""
import numpy as np
import pytest
import torch

from reactdiff import config
from reactdiff.model.covariance import TemporalCovariance, window_second_moment
from reactdiff.model.export import build_model, load_export, save_export
from reactdiff.model.spectrum import TemporalSpectrum, dct_matrix
from reactdiff.train.loop import fit_data_statistics
from conftest import assert_denoise_loss_is


def random_walks(n: int, w: int, d: int, seed: int = 0) -> np.ndarray:
    """Windows that start where their past ended: 0 at the first frame, spreading with time (as the residual of a
    window's prediction from its last known frame does)."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(n, w, d)) * np.linspace(0.5, 1.5, d), axis=1)


def test_colour_has_the_data_covariance_and_whitening_undoes_it():
    cov = TemporalCovariance(12, 3, sigma_data=1.0)
    eps = torch.randn(40000, 12, 3, dtype=torch.float64)
    torch.testing.assert_close(cov.colour(eps), eps)  # unfitted: white
    windows = random_walks(3000, 12, 3)
    cov.fit(windows)
    torch.testing.assert_close(cov.cov, torch.from_numpy(window_second_moment(windows)))
    coloured = cov.colour(eps)
    measured = torch.einsum("ntd,nsd->dts", coloured, coloured) / len(coloured)
    torch.testing.assert_close(measured, cov.cov, rtol=0, atol=0.05 * cov.cov.abs().max().item())
    white = cov.whiten(coloured)
    torch.testing.assert_close(torch.einsum("ntd,nsd->dts", white, white) / len(white),
                               torch.eye(12, dtype=torch.float64).expand(3, 12, 12), rtol=0, atol=0.03)
    # a shorter window: the covariance of its first frames, exactly the leading block
    short = cov.colour(eps[:, :5])
    torch.testing.assert_close(torch.einsum("ntd,nsd->dts", short, short) / len(short), cov.cov[:, :5, :5],
                               rtol=0, atol=0.05 * cov.cov[:, :5, :5].abs().max().item())
    with pytest.raises(ValueError, match="windows of up to 12 frames.*13-frame"):
        cov.colour(torch.randn(1, 13, 3))
    with pytest.raises(ValueError, match=r"\(N, 12, 3\)"):
        cov.fit(np.zeros((4, 8, 3)))


def test_the_first_frame_keeps_the_little_variance_the_data_gives_it():
    windows = random_walks(3000, 32, 2)  # the first frame's variance is 1/32 of the last one's
    cov, spec = TemporalCovariance(32, 2, sigma_data=1.0), TemporalSpectrum(32, 2, sigma_data=1.0)
    cov.fit(windows)
    spec.fit(windows)
    eps = torch.randn(20000, 32, 2, dtype=torch.float64)
    data = windows[:, 0].var(0)
    np.testing.assert_allclose(cov.colour(eps)[:, 0].var(0).numpy(), data, rtol=0.1)
    assert (spec.colour(eps.float())[:, 0].var(0).numpy() > 5 * data).all()  # the DCT model cannot tell frames apart
    # ...and the loss knows it: a window that starts away from its past (an offset of every frame) costs far more
    offset = torch.full((1, 32, 2), 0.1, dtype=torch.float64)
    assert cov.loss_coordinates(offset).square().sum() > 5 * spec.loss_coordinates(offset.float()).square().sum()


def test_loss_weight_power_moves_the_loss_from_whitened_to_frames():
    cov = TemporalCovariance(8, 2, sigma_data=1.0)
    cov.fit(random_walks(2000, 8, 2))
    err = torch.randn(500, 8, 2, dtype=torch.float64)
    torch.testing.assert_close(cov.loss_coordinates(err), cov.whiten(err))  # p = 0: whitened
    cov.loss_weight_power = 2.0  # p = 2: the per-frame MSE over the dim's mean variance
    cov._maps.clear()
    frames = err.square().mean((0, 1)) / torch.diagonal(cov.cov, dim1=1, dim2=2).mean(1)
    torch.testing.assert_close(cov.loss_coordinates(err).square().mean(), frames.mean(), rtol=1e-6, atol=0)


def test_the_loss_band_weighs_the_dct_band_before_the_whitening():
    band = torch.ones(16, 3)
    band[4:7, 1] = 4.0
    err = torch.randn(5, 16, 3, dtype=torch.float64)
    cov, spec = TemporalCovariance(16, 3, sigma_data=1.0), TemporalSpectrum(16, 3, sigma_data=1.0)
    # unfitted both whiten to the frames themselves: the band's cost is the same, coordinate for coordinate in DCT
    torch.testing.assert_close(cov.loss_coordinates(err, band.double()).square().sum((1, 2)),
                               (spec.loss_coordinates(err) * band.double()).square().sum((1, 2)))
    inside = torch.zeros(1, 16, 3, dtype=torch.float64)
    inside[0, :, 1] = dct_matrix(16, dtype=torch.float64)[5]
    outside = torch.zeros_like(inside)
    outside[0, :, 1] = dct_matrix(16, dtype=torch.float64)[9]
    ratio = cov.loss_coordinates(inside, band.double()).square().sum() / cov.loss_coordinates(
        outside, band.double()).square().sum()
    assert ratio.item() == pytest.approx(16.0)


def test_the_buffer_stays_float64_and_travels_with_the_weights(tiny_shards, tmp_path):
    cfg = config.load(None, ["model.size=tiny", "data.history=8", "data.window=32", f"data.shards={tiny_shards}",
                             "model.noise=covariance"])
    model = build_model(cfg)
    fit_data_statistics(model, cfg)  # the residual of the past regression, as training fits it
    fitted = model.spectrum.cov.clone()
    assert fitted.dtype == torch.float64 and fitted.shape == (58, 32, 32)
    assert not torch.equal(fitted, torch.eye(32, dtype=torch.float64).expand(58, 32, 32))
    eps = torch.randn(2, 32, 58).bfloat16()
    full = model.colour_noise(eps.float())
    model.bfloat16()  # what DeepSpeed's bf16 does to the module: the network, not the covariance
    assert model.spectrum.cov.dtype == torch.float64 and torch.equal(model.spectrum.cov, fitted)
    assert model.unet.inp.weight.dtype == torch.bfloat16
    half = model.colour_noise(eps)  # coloured in fp32, returned in the network's precision
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=1e-2, atol=1e-3)
    model.float()
    save_export(tmp_path / "export", model, cfg, kind="ema")
    loaded, loaded_cfg, _ = load_export(tmp_path / "export")
    assert loaded_cfg.model.noise.value == "covariance"
    assert loaded.spectrum.cov.dtype == torch.float64 and torch.equal(loaded.spectrum.cov, fitted)
    eps = torch.randn(2, 32, 58)
    torch.testing.assert_close(loaded.colour_noise(eps), model.colour_noise(eps))  # maps remade from the loaded one
    # the training loss is the EDM loss in the covariance's coordinates, on the window minus its prediction
    assert_denoise_loss_is(model, lambda x, h: model.anchor(x[:, :h], x.shape[1] - h, None), model.loss_coordinates)


def test_the_config_takes_it_with_a_loss_band_and_refuses_the_band_without_a_temporal_model():
    cfg = config.load(None, ["model.noise=covariance", "model.loss_band.weight=8"])
    assert cfg.model.noise.value == "covariance"
    with pytest.raises(config.ConfigError, match="model.noise=spectral or covariance"):
        config.load(None, ["model.noise=white", "model.loss_band.weight=8"])


def test_the_level_temperature_widens_the_leading_component_and_leaves_the_first_frame(tiny_shards):
    """With the covariance noise the window's level is its leading principal component, which starts where the past
    ended: level_temperature spreads it without moving the window's first frame (the DCT's level would)."""
    from reactdiff.sampling.online import WindowSampler

    cfg = config.load(None, ["model.size=tiny", "data.history=8", "data.window=32", f"data.shards={tiny_shards}",
                             "model.noise=covariance"])
    model = build_model(cfg)
    model.spectrum.fit(random_walks(3000, 32, 58))
    noise = model.colour_noise(torch.randn(4000, 32, 58))
    coords = model.spectrum.whiten(noise)
    torch.testing.assert_close(model.spectrum.unwhiten(coords), noise, rtol=1e-4, atol=1e-4)
    step = WindowSampler(model, sampler="euler", steps=2, temperature=0.8, level_temperature=2.0)
    cooled = model.spectrum.whiten(step._cool(noise))
    torch.testing.assert_close(cooled[:, -1], 2.0 * coords[:, -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cooled[:, :-1], 0.8 * coords[:, :-1], rtol=1e-4, atol=1e-4)
    wide = WindowSampler(model, sampler="euler", steps=2, temperature=1.0, level_temperature=2.0)._cool(noise)
    first = lambda x: x[:, 0].var(0).mean().item()  # noqa: E731
    last = lambda x: x[:, -1].var(0).mean().item()  # noqa: E731
    assert first(wide) < 1.3 * first(noise) and last(wide) > 2.0 * last(noise)


@pytest.mark.parametrize("noise", ["spectral", "covariance"])
def test_a_groups_own_loss_power_gives_its_dims_that_powers_loss_and_leaves_the_others(noise):
    """model.loss_group_power.expression=1 with model.loss_weight_power=2: the expression dims' loss coordinates are
    the p=1 model's, the head pose's the p=2 model's, whatever the noise model."""
    walks = random_walks(400, 16, 58).astype(np.float32)  # data.window=16: the noise model's window

    def model(*overrides):
        m = build_model(config.load(None, ["model.size=tiny", "data.window=16", f"model.noise={noise}", *overrides]))
        m.spectrum.fit(walks)
        return m

    mixed = model("model.loss_weight_power=2", "model.loss_group_power.expression=1")
    p1, p2 = model("model.loss_weight_power=1"), model("model.loss_weight_power=2")
    err = torch.randn(3, 16, 58)
    got, one, two = (m.spectrum.loss_coordinates(err) for m in (mixed, p1, p2))
    torch.testing.assert_close(got[..., :52], one[..., :52])
    torch.testing.assert_close(got[..., 52:], two[..., 52:])
    assert not torch.allclose(one[..., :52], two[..., :52])  # the powers do differ on these walks
    assert isinstance(p2.spectrum.loss_weight_power, float)  # no group power: one number, as before


@pytest.mark.parametrize("override,needle", [
    ("model.loss_group_power.rotation=-1", "model.loss_group_power.rotation: must be >= 0"),
    ("model.loss_group_power.pitch=1", "model.loss_group_power.pitch"),
])
def test_bad_loss_group_powers_fail_with_the_key(override, needle):
    with pytest.raises(config.ConfigError, match=needle.replace(".", r"\.")):
        config.load(None, ["model.noise=covariance", override])
    with pytest.raises(config.ConfigError, match="needs model.noise=spectral or covariance"):
        config.load(None, ["model.noise=white", "model.loss_group_power.expression=1"])
