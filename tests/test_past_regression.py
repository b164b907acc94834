"""model.anchor=regression: the window's least-squares prediction from the last known frame -- the fit, the
prediction, the fit from shards (then the residual's spectrum), the loss, sampling and the export."""
import numpy as np
import pytest
import torch

from reactdiff import config
from reactdiff.data.reader import listener_windows
from reactdiff.model.export import build_model, load_export, save_export
from reactdiff.model.past_regression import PastRegression, fit_past_regression
from reactdiff.model.spectrum import window_rms
from reactdiff.train.loop import fit_data_statistics
from conftest import assert_denoise_loss_is


def ar1_windows(n: int, w: int, phi: float, mu: float, seed: int = 0) -> np.ndarray:
    """(n, w + 1, 2) stationary AR(1) windows around mu: x[t+1] - mu = phi (x[t] - mu) + e; dim 1 is constant."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, w + 1, 2))
    x[:, 0, 0] = mu + rng.normal(size=n) / np.sqrt(1 - phi ** 2)
    for t in range(w):
        x[:, t + 1, 0] = mu + phi * (x[:, t, 0] - mu) + rng.normal(size=n)
    x[..., 1] = 3.0
    return x


def test_the_fit_recovers_mean_reversion():
    x = ar1_windows(20000, 8, phi=0.9, mu=2.0)
    alpha, beta = fit_past_regression(x[:, 0], x[:, 1:])
    np.testing.assert_allclose(beta[:, 0], 0.9 ** np.arange(1, 9), atol=0.02)  # E[x_t | l] = mu + phi^t (l - mu)
    np.testing.assert_allclose(alpha[:, 0], 2.0 * (1 - 0.9 ** np.arange(1, 9)), atol=0.1)
    np.testing.assert_array_equal(beta[:, 1], 0.0)  # a constant dim: no slope, its value as the intercept
    np.testing.assert_allclose(alpha[:, 1], 3.0)
    with pytest.raises(ValueError, match="last frames"):
        fit_past_regression(x[:, 0], x[:, 1:, :1])


def test_the_prediction_and_longer_windows():
    reg = PastRegression(4, 2)
    last = torch.tensor([[1.0, -2.0]])
    torch.testing.assert_close(reg(last, 4), torch.zeros(1, 4, 2))  # unfitted: the mean face
    x = ar1_windows(5000, 4, phi=0.5, mu=0.0)
    reg.fit(x[:, 0], x[:, 1:])
    pred = reg(last, 6)
    torch.testing.assert_close(pred[:, :4], reg.alpha + reg.beta * last[:, None])
    torch.testing.assert_close(pred[:, 4:], pred[:, 3:4].expand(1, 2, 2))  # past the fit: the last offset holds
    with pytest.raises(ValueError, match=r"\(N, 4, 2\)"):
        reg.fit(x[:, 0], x[:, 1:4])


@pytest.fixture()
def regression_model(tiny_shards):
    cfg = config.load(None, ["model.size=tiny", "data.history=8", "data.window=32", f"data.shards={tiny_shards}",
                             "model.anchor=regression"])
    model = build_model(cfg)
    fit_data_statistics(model, cfg)
    return cfg, model


def test_fitted_from_shards_then_the_residuals_spectrum(regression_model):
    cfg, model = regression_model
    x = listener_windows(cfg.data, 33, clips=cfg.model.spectrum_clips)
    alpha, beta = fit_past_regression(x[:, 0], x[:, 1:])
    torch.testing.assert_close(model.past_regression.beta, torch.from_numpy(beta).float())
    torch.testing.assert_close(model.past_regression.alpha, torch.from_numpy(alpha).float())
    residual = x[:, 1:] - (alpha + beta * x[:, :1])
    torch.testing.assert_close(model.spectrum.rms, torch.from_numpy(window_rms(residual)).float(), rtol=1e-4,
                               atol=1e-5)
    assert np.square(residual).mean() < np.square(x[:, 1:] - x[:, 1:].mean(0)).mean()  # the past explains some


def test_the_loss_and_the_anchor(regression_model):
    cfg, model = regression_model
    past = torch.randn(3, 8, 58)
    reg = model.past_regression
    torch.testing.assert_close(model.anchor(past, 32), reg.alpha + reg.beta * past[:, -1:])
    torch.testing.assert_close(model.anchor(torch.zeros(3, 0, 58), 32), reg.alpha.expand(3, 32, 58))  # no past
    assert_denoise_loss_is(model, lambda x, h: reg(x[:, h - 1], 32), model.spectrum.loss_coordinates)


def test_sampling_adds_the_prediction_and_the_export_keeps_it(regression_model, tmp_path):
    from reactdiff.sampling.online import generate

    cfg, model = regression_model
    model.eval()
    reg = model.past_regression
    reg.alpha.fill_(4.0)  # predict a far-off constant face: an untrained (zero-output) network samples around it
    reg.beta.zero_()
    batch = {"speaker_fv": torch.zeros(2, 100, 58), "speaker_feat": torch.zeros(2, 100, 80), "key": ["x", "y"],
             "role": ["a", "b"]}
    y = generate(model, batch, k=4, history=8, window=32, overlap=4, sampler="dpmpp_2m", steps=6)
    assert abs(float(y.mean()) - 4.0) < 0.5
    loaded, _, _ = load_export(save_export(tmp_path / "export", model, cfg, kind="test"))
    torch.testing.assert_close(loaded.past_regression.alpha, reg.alpha)
    torch.testing.assert_close(loaded.spectrum.rms, model.spectrum.rms)
    torch.testing.assert_close(generate(loaded, batch, k=4, history=8, window=32, overlap=4, sampler="dpmpp_2m",
                                        steps=6), y)
