"""model.anchor=regression: the window's least-squares prediction from the last known frame (and with
model.anchor_memory the mean of the listener's frames before it) -- the fit, the prediction, the fit from shards
(then the residual's spectrum), the loss, sampling and the export."""
import numpy as np
import pytest
import torch

from reactdiff import config
from reactdiff.data.reader import BatchStream, listener_windows, regression_windows
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
    alpha, beta, gamma = fit_past_regression(x[:, 0], x[:, 1:])
    assert gamma is None
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
    last, windows, memory = regression_windows(cfg.data, 32, clips=cfg.model.spectrum_clips)
    np.testing.assert_array_equal(last, x[:, 0])  # the same windows the regression was always fitted on
    np.testing.assert_array_equal(windows, x[:, 1:])
    assert memory is None
    alpha, beta, _ = fit_past_regression(x[:, 0], x[:, 1:])
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


def people(n: int, t: int, phi: float, spread: float, seed: int = 0) -> np.ndarray:
    """(n, t) AR(1) streams, each around its own person's level (std `spread` over people), unit innovations."""
    rng = np.random.default_rng(seed)
    level = rng.normal(size=n) * spread
    x = np.empty((n, t))
    x[:, 0] = level + rng.normal(size=n) / np.sqrt(1 - phi ** 2)
    for i in range(1, t):
        x[:, i] = level + phi * (x[:, i - 1] - level) + rng.normal(size=n)
    return x


def test_the_memory_says_where_the_person_returns_to():
    # each person reverts to its own level: the last frame alone predicts a return to the population's mean
    x = people(4000, 200, phi=0.9, spread=3.0)
    m, s, w = 100, 120, 16
    last, windows, memory = x[:, s - 1:s, None][:, 0], x[:, s:s + w, None], x[:, s - m:s].mean(1)[:, None]
    alpha1, beta1, _ = fit_past_regression(last, windows)
    alpha, beta, gamma = fit_past_regression(last, windows, memory)
    # E[x_{s+t} | l, level] = level + phi^t (l - level): the memory mean (a noisy estimate of the level) takes
    # over the weight the last frame alone gave the level
    decay = 0.9 ** np.arange(1, w + 1)
    np.testing.assert_allclose(beta[:4, 0], decay[:4], atol=0.05)
    assert np.all(beta[:, 0] < beta1[:, 0]) and np.all(gamma[:, 0] > 0.5 * (1 - decay))
    err = lambda a, b, g=0: np.square(windows - (a + b * last[:, None] + g * memory[:, None])).mean()  # noqa: E731
    assert err(alpha, beta, gamma) < 0.9 * err(alpha1, beta1)  # measured 0.83
    # collinear regressors (the memory is the last frame, as at the clip start): the last frame alone
    a2, b2, g2 = fit_past_regression(last, windows, last.copy())
    np.testing.assert_allclose(b2, beta1)
    np.testing.assert_array_equal(g2, 0.0)
    np.testing.assert_allclose(a2, alpha1)
    with pytest.raises(ValueError, match="memory means"):
        fit_past_regression(last, windows, memory[:10])


def test_the_memory_prediction_and_its_errors():
    reg = PastRegression(4, 2, memory=True)
    assert reg.uses_memory and "gamma" in reg.state_dict()
    assert "gamma" not in PastRegression(4, 2).state_dict()  # models made before the memory load as they are
    reg.alpha.fill_(1.0), reg.beta.fill_(0.5), reg.gamma.fill_(0.25)
    last, memory = torch.tensor([[2.0, 4.0]]), torch.tensor([[4.0, -8.0]])
    torch.testing.assert_close(reg(last, 6, memory), (1.0 + 0.5 * last + 0.25 * memory)[:, None].expand(1, 6, 2))
    with pytest.raises(ValueError, match="anchor_memory"):
        reg(last, 4)
    with pytest.raises(ValueError, match="needs memory means"):
        reg.fit(np.zeros((8, 2)), np.zeros((8, 4, 2)))
    with pytest.raises(ValueError, match="takes no memory means"):
        PastRegression(4, 2).fit(np.zeros((8, 2)), np.zeros((8, 4, 2)), np.zeros((8, 2)))


@pytest.fixture()
def memory_model(tiny_shards):
    cfg = config.load(None, ["model.size=tiny", "data.history=8", "data.window=32", f"data.shards={tiny_shards}",
                             "model.anchor=regression", "model.anchor_memory=40", "data.num_workers=0"])
    model = build_model(cfg)
    fit_data_statistics(model, cfg)
    return cfg, model


def test_memory_fitted_from_shards_and_carried_by_the_reader(memory_model):
    cfg, model = memory_model
    last, windows, memory = regression_windows(cfg.data, 32, clips=cfg.model.spectrum_clips, memory=40)
    x = listener_windows(cfg.data, 33, clips=cfg.model.spectrum_clips)
    np.testing.assert_array_equal(last, x[:, 0])
    alpha, beta, gamma = fit_past_regression(last, windows, memory)
    torch.testing.assert_close(model.past_regression.gamma, torch.from_numpy(gamma).float())
    assert np.abs(gamma).max() > 0
    # the reader's items: the mean of the listener's (normalised) frames [start - 40, start), zeros at the start
    stream = BatchStream(cfg.data, memory=40)
    index, normaliser = stream.dataset.index, stream.dataset.normaliser
    from reactdiff.data.sample_format import PEERS, decode_npy

    batch = next(iter(stream))
    seen = 0
    for i, key in enumerate(batch["key"]):
        shard, sample = next((s, j) for s, keys in enumerate(index.keys) for j, k in enumerate(keys) if k == key)
        lis = PEERS[0 if batch["role"][i] == "a->b" else 1][1]
        fv = normaliser.normalise(decode_npy(index.read(shard, sample, lambda n: n == f"{lis}.fv.npy")[
            f"{lis}.fv.npy"]).astype(np.float32))
        start = int(batch["start"][i])
        want = fv[max(0, start - 40):start].mean(0) if start else np.zeros(58, np.float32)
        np.testing.assert_allclose(batch["listener_memory"][i].numpy(), want, rtol=1e-5, atol=1e-6)
        seen += start > 0
    assert seen
    assert "listener_memory" not in next(iter(BatchStream(cfg.data)))  # only asked for


def test_memory_in_the_loss_and_in_sampling(memory_model):
    from reactdiff.sampling.online import window_condition

    cfg, model = memory_model
    reg = model.past_regression
    past, mem = torch.randn(3, 8, 58), torch.randn(3, 58)
    want = reg.alpha + reg.beta * past[:, -1:] + reg.gamma * mem[:, None]
    torch.testing.assert_close(model.anchor(past, 32, mem), want)
    with pytest.raises(ValueError, match="memory mean in the batch"):
        model.listener_memory({"listener_fv": past})
    memory = torch.randn(2, 58)
    assert_denoise_loss_is(model, lambda x, h: reg(x[:, h - 1], 32, memory), model.spectrum.loss_coordinates,
                           extra={"listener_memory": memory})
    # generation: the memory is the mean of the 40 generated frames before the window (zeros at the clip start)
    out = torch.randn(2, 100, 58)
    spk, valid = torch.zeros(2, 100, 58), torch.ones(2, 100, dtype=torch.bool)
    for start, want in ((0, torch.zeros(2, 58)), (24, out[:, :24].mean(1)), (72, out[:, 32:72].mean(1))):
        cond = window_condition(model, spk, torch.zeros(2, 100, 80), out, valid, start, 8, 32)
        torch.testing.assert_close(cond["memory"], want)


def test_the_memory_of_a_model_that_predicts_emotion():
    from reactdiff.data.windows import cut_item

    rng = np.random.default_rng(0)
    sample = {"meta": {"frames": 100, "matrix_rows": {"a": 0, "b": 1}, "key": "k"},
              **{f"{p}.fv": rng.normal(size=(100, 58)).astype(np.float32) for p in "ab"},
              **{f"{p}.emotion": rng.normal(size=(100, 25)).astype(np.float32) for p in "ab"}}
    item = cut_item(sample, 0, 60, 32, 8, memory=40)
    np.testing.assert_allclose(item["listener_memory"], sample["b.fv"][20:60].mean(0))
    np.testing.assert_allclose(item["listener_emotion_memory"], sample["b.emotion"][20:60].mean(0))
    cfg = config.load(None, ["model.size=tiny", "model.predict_emotion=true", "data.emotion=true",
                             "model.anchor_memory=40"])
    model = build_model(cfg)
    batch = {k: torch.from_numpy(item[k])[None] for k in ("listener_memory", "listener_emotion_memory")}
    assert model.listener_memory(batch).shape == (1, 83)
    assert model.past_regression.gamma.shape[1] == 83
