"""REACT metrics against slow, direct NumPy transcriptions of their definitions; DTW against tslearn; FID against the
closed-form Gaussian case; properties and input validation."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tslearn import metrics as tslearn_metrics  # the test extra has it: a missing reference fails, never skips

from reactdiff.eval import dtw as dtw_mod
from reactdiff.eval import fid, metrics


# ---------------------------------------------------------------- slow reference transcriptions (loops)

def ref_ccc(gt, pr):
    vals = []
    for d in range(gt.shape[1]):
        a, b = gt[:, d], pr[:, d]
        cor = np.corrcoef(a, b)[0, 1]
        vals.append(2 * cor * a.std() * b.std() / (a.var() + b.var() + (a.mean() - b.mean()) ** 2 + 1e-8))
    return np.mean(vals)


def ref_frcorr(pred, gt, nb, per_k=1.0):
    out = []
    for c in range(pred.shape[0]):
        js = np.flatnonzero(nb[c])
        out.append(sum(max(ref_ccc(gt[j], pred[c, i]) for j in js) for i in range(pred.shape[1])))
    return np.mean(out) * per_k


def ref_frdist(pred, gt, nb, emotion=False, per_k=1.0):
    slices = metrics.EMOTION_SLICES if emotion else ((0, pred.shape[-1], 1.0),)
    out = []
    for c in range(pred.shape[0]):
        js = np.flatnonzero(nb[c])
        out.append(sum(min(sum(w * tslearn_metrics.dtw(pred[c, i][:, s:e], gt[j][:, s:e]) for s, e, w in slices)
                           for j in js) for i in range(pred.shape[1])))
    return np.mean(out) * per_k


def ref_frdiv(pred):
    n, k, t, d = pred.shape
    per = []
    for c in range(n):
        s = sum(((pred[c, a] - pred[c, b]) ** 2).sum() for a in range(k) for b in range(k) if a != b)
        per.append(s / (k * (k - 1) * t * d))
    return np.mean(per)


def ref_frdvs(pred):
    n, k, t, d = pred.shape
    per = []
    for i in range(k):
        s = sum(((pred[a, i] - pred[b, i]) ** 2).sum() for a in range(n) for b in range(n) if a != b)
        per.append(s / (n * (n - 1) * t * d))
    return np.mean(per)


def ref_frvar(pred):
    n, k, t, d = pred.shape
    return np.mean([np.var(pred[c, i, :, j], ddof=1) for c in range(n) for i in range(k) for j in range(d)])


def ref_offset(x, y, max_lag=49):
    rs = []
    for lag in range(-max_lag, max_lag + 1):
        a, b = (x[lag:], y[:-lag]) if lag > 0 else ((x[:lag], y[-lag:]) if lag < 0 else (x, y))
        rs.append(np.mean([np.corrcoef(a[:, d], b[:, d])[0, 1] for d in range(x.shape[1])]))
    return abs(len(rs) // 2 - int(np.argmax(rs)))


def ref_frsyn(pred, spk, max_lag=49, first_only=False):
    ks = range(1) if first_only else range(pred.shape[1])
    return np.mean([ref_offset(pred[c, i], spk[c], max_lag) for c in range(pred.shape[0]) for i in ks])


def make_inputs(n=3, k=3, m=4, t=60, d=58, seed=0):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal((n, k, t, d)) * rng.uniform(0.5, 2, d) + rng.uniform(-1, 1, d)
    gt = rng.standard_normal((m, t, d)) * rng.uniform(0.5, 2, d) + rng.uniform(-1, 1, d)
    spk = rng.standard_normal((n, t, d))
    nb = rng.random((n, m)) < 0.5
    nb[np.arange(n), np.arange(n) % m] = True
    return pred, gt, spk, nb


# ---------------------------------------------------------------- DTW

@pytest.mark.parametrize("t1,t2,d", [(1, 1, 3), (1, 6, 2), (6, 1, 2), (2, 9, 1), (17, 11, 4), (40, 33, 58)])
def test_dtw_matches_tslearn(t1, t2, d):
    rng = np.random.default_rng(t1 * 100 + t2)
    x, y = rng.standard_normal((5, t1, d)), rng.standard_normal((5, t2, d)) * 2 + 1
    ours = dtw_mod.dtw_pairs(x, y, device="cpu", max_pairs_per_chunk=2).numpy()
    ref = np.array([tslearn_metrics.dtw(x[i], y[i]) for i in range(5)])
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_dtw_750_frames_float32_and_indexed():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 750, 58)).astype(np.float32)
    b = (rng.standard_normal((2, 750, 58)) * 0.5 + 0.2).astype(np.float32)
    ia, ib = np.array([0, 1, 2, 2]), np.array([1, 0, 1, 0])
    ours = dtw_mod.dtw_indexed(a, b, ia, ib, device="cpu", max_pairs_per_chunk=3).numpy()
    ref = np.array([tslearn_metrics.dtw(a[i], b[j]) for i, j in zip(ia, ib)])  # tslearn casts to float64 too
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert dtw_mod.dtw_pairs(a[0], a[0]).item() == 0.0  # identical frames cost exactly 0


def test_dtw_accumulated_cost_recursion():
    rng = np.random.default_rng(2)
    c = rng.random((7, 5))
    r = np.full((8, 6), np.inf)
    r[0, 0] = 0
    for i in range(7):
        for j in range(5):
            r[i + 1, j + 1] = c[i, j] + min(r[i, j + 1], r[i + 1, j], r[i, j])
    got = dtw_mod.accumulated_cost(torch.from_numpy(c)[..., None].repeat(1, 1, 2))
    np.testing.assert_allclose(got.numpy(), [r[-1, -1]] * 2, rtol=1e-14)


_TRITON_CHECK = """
import numpy as np, torch
from tslearn import metrics as tsm
from reactdiff.eval import dtw, dtw_triton
rng = np.random.default_rng(0)
for t1, t2, b, per_program in [(1, 1, 1, 2), (1, 6, 3, 2), (6, 1, 2, 2), (17, 11, 5, 2), (33, 40, 3, 4), (9, 9, 7, 1)]:
    cost = dtw.squared_cost(torch.from_numpy(rng.standard_normal((b, t1, 3))),
                            torch.from_numpy(rng.standard_normal((b, t2, 3)) + 0.5))
    want = dtw._accumulated_cost_torch(cost)
    got = dtw_triton.accumulated_cost(cost, pairs_per_program=per_program)
    assert torch.equal(got, want), (t1, t2, b, per_program, got, want)
a, b = rng.standard_normal((4, 21, 5)), rng.standard_normal((3, 18, 5))
ia, ib = np.array([0, 3, 2, 1, 3]), np.array([2, 0, 1, 1, 2])
ours = dtw.dtw_indexed(a, b, ia, ib, device="cpu", backend="triton").numpy()
np.testing.assert_allclose(ours, [tsm.dtw(a[i], b[j]) for i, j in zip(ia, ib)], rtol=1e-12)
print("triton kernel ok")
"""


def test_dtw_triton_kernel_interpreted():
    """The GPU kernel, run by Triton's interpreter on CPU tensors: bit-identical to the torch recursion."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    res = subprocess.run([sys.executable, "-c", _TRITON_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "triton kernel ok" in res.stdout, res.stderr[-3000:]


def test_dtw_backend_choice():
    assert dtw_mod.resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="backend must be one of auto, torch, triton; got 'cuda'"):
        dtw_mod.dtw_pairs(np.zeros((2, 3)), np.zeros((2, 3)), backend="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_dtw_gpu_backends_agree():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 750, 58)).astype(np.float32)
    b = rng.standard_normal((4, 750, 58)).astype(np.float32)
    ia, ib = np.repeat(np.arange(6), 4), np.tile(np.arange(4), 6)
    triton_vals = dtw_mod.dtw_indexed(a, b, ia, ib, device="cuda", backend="triton")
    torch_vals = dtw_mod.dtw_indexed(a, b, ia, ib, device="cuda", backend="torch")
    assert torch.equal(triton_vals, torch_vals)
    cpu_vals = dtw_mod.dtw_indexed(a, b, ia, ib, device="cpu")
    np.testing.assert_allclose(triton_vals.numpy(), cpu_vals.numpy(), rtol=1e-12)


# ---------------------------------------------------------------- metrics against the transcriptions

def test_ccc_closed_form():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((50, 4)), rng.standard_normal((50, 4)) * 3 + 1
    closed = np.mean([2 * np.mean((x[:, d] - x[:, d].mean()) * (y[:, d] - y[:, d].mean()))
                      / (x[:, d].var() + y[:, d].var() + (x[:, d].mean() - y[:, d].mean()) ** 2 + 1e-8)
                      for d in range(4)])
    assert metrics.ccc(x, y).item() == pytest.approx(closed, rel=1e-12)
    assert metrics.ccc(x, y).item() == pytest.approx(ref_ccc(x, y), rel=1e-10)
    assert metrics.ccc(x, x).item() == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("convention,per_k", [("react2024", 1.0), ("reactface", 1 / 3)])
def test_frcorr_frdist_3dmm(convention, per_k):
    pred, gt, spk, nb = make_inputs()
    got = metrics.compute_all(pred, gt, spk, nb, kind="3dmm", convention=convention, device="cpu")
    assert got["convention"] == convention and got["kind"] == "3dmm"
    assert got["FRCorr"] == pytest.approx(ref_frcorr(pred, gt, nb, per_k), rel=1e-9)
    assert got["FRDist"] == pytest.approx(ref_frdist(pred, gt, nb, per_k=per_k), rel=1e-9)


def test_emotion_frdist_weights_slices():
    pred, gt, spk, nb = make_inputs(n=2, k=2, m=3, t=55, d=25, seed=4)
    got = metrics.compute_all(pred, gt, spk, nb, kind="emotion", device="cpu")
    assert got["FRDist"] == pytest.approx(ref_frdist(pred, gt, nb, emotion=True), rel=1e-9)
    assert got["FRCorr"] == pytest.approx(ref_frcorr(pred, gt, nb), rel=1e-9)
    assert got["frdist_emotion_slices"][0] == [0, 15, 1 / 15]


def test_diversity_and_variance():
    pred, _, _, _ = make_inputs(n=3, k=4, t=20, d=7, seed=5)
    assert metrics.fr_div(torch.from_numpy(pred), "cpu") == pytest.approx(ref_frdiv(pred), rel=1e-10)
    assert metrics.fr_dvs(torch.from_numpy(pred), "cpu") == pytest.approx(ref_frdvs(pred), rel=1e-10)
    assert metrics.fr_var(torch.from_numpy(pred), "cpu") == pytest.approx(ref_frvar(pred), rel=1e-10)


def test_frsyn_against_transcription():
    pred, _, spk, _ = make_inputs(n=2, k=2, t=70, d=5, seed=6)
    pred[0, 1, 3:] = spk[0, :-3] + 0.3 * pred[0, 1, 3:]  # a correlated one, so not every offset is arbitrary
    offs = metrics.tlcc_offsets(torch.from_numpy(pred), torch.from_numpy(spk), device="cpu")
    ref = [[ref_offset(pred[c, i], spk[c]) for i in range(2)] for c in range(2)]
    np.testing.assert_array_equal(offs.numpy(), ref)
    assert offs[0, 1] == 3


# ---------------------------------------------------------------- properties

def test_identical_reactions_are_perfect():
    _, gt, spk, _ = make_inputs(n=3, m=3, t=60, seed=7)
    nb = np.eye(3, dtype=bool)
    pred = np.repeat(gt[:, None], 4, axis=1)  # every sample equals the (only) appropriate reaction
    got = metrics.compute_all(pred, gt, spk, nb, device="cpu")
    assert got["FRDist"] == 0.0
    assert got["FRCorr"] == pytest.approx(4.0, rel=1e-7)  # = K under react2024
    assert metrics.compute_all(pred, gt, spk, nb, convention="reactface", device="cpu")["FRCorr"] == \
        pytest.approx(1.0, rel=1e-7)
    assert got["FRDiv"] == pytest.approx(0.0, abs=1e-20)


def test_constant_sequences_have_no_variance():
    pred = np.full((2, 3, 60, 58), 0.7)
    pred[1] = -2.5
    assert metrics.fr_var(torch.from_numpy(pred), "cpu") == pytest.approx(0.0, abs=1e-20)


def test_frsyn_shifted_copies_and_reference_quirk():
    rng = np.random.default_rng(8)
    n, k, t, d = 2, 3, 120, 6
    spk = rng.standard_normal((n, t, d))
    shifts = [5, -12, 30]
    pred = rng.standard_normal((n, k, t, d))
    for c in range(n):
        for i, s in enumerate(shifts):
            if s >= 0:
                pred[c, i, s:] = spk[c, :t - s]  # reacts s frames after the speaker
            else:
                pred[c, i, :t + s] = spk[c, -s:]
    offs = metrics.tlcc_offsets(torch.from_numpy(pred), torch.from_numpy(spk), device="cpu")
    np.testing.assert_array_equal(offs.numpy(), [[5, 12, 30]] * n)
    pred_t = torch.from_numpy(pred)
    assert metrics.fr_syn(pred_t, torch.from_numpy(spk), device="cpu") == pytest.approx(np.mean([5, 12, 30]))
    assert metrics.fr_syn(pred_t, torch.from_numpy(spk), reference_quirks=True, device="cpu") == 5.0
    gt = rng.standard_normal((n, t, 58))
    full = np.zeros((n, k, t, 58))
    full[..., :d] = pred
    spk58 = np.zeros((n, t, 58))
    spk58[..., :d] = spk
    nb = np.eye(n, dtype=bool)
    a = metrics.compute_all(full, gt, spk58, nb, device="cpu")
    b = metrics.compute_all(full, gt, spk58, nb, reference_quirks=True, device="cpu")
    assert (a["FRSyn"], a["frsyn_samples"]) == (pytest.approx(np.mean([5, 12, 30])), "all")
    assert (b["FRSyn"], b["frsyn_samples"], b["reference_quirks"]) == (5.0, "first", True)
    assert ref_frsyn(pred, spk, first_only=True) == 5.0


# ---------------------------------------------------------------- FRRea / FID

def test_frechet_distance_diagonal_gaussians():
    rng = np.random.default_rng(9)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert fid.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    a = rng.standard_normal((6, 6))
    s = a @ a.T + np.eye(6)
    assert fid.frechet_distance(mu1, s, mu2, 4 * s) == pytest.approx(np.sum((mu1 - mu2) ** 2) + np.trace(s),
                                                                      rel=1e-9)


def test_frechet_distance_singular_product_adds_offset(monkeypatch):
    real = fid._sqrtm
    calls = []

    def flaky(a):
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real(a)

    monkeypatch.setattr(fid, "_sqrtm", flaky)
    with pytest.warns(UserWarning, match="singular"):
        v = fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3))
    assert v == pytest.approx(0.0, abs=1e-5) and len(calls) == 2


def conv_extractor(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(16, 3, 3, 3, generator=g)
    return lambda x: torch.tanh(torch.nn.functional.conv2d(x, w)).mean((2, 3))


def test_frrea_with_injected_extractor():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(80, 3, 12, 12, generator=g)
    fake = (torch.rand(70, 3, 12, 12, generator=g) * 0.6 + 0.2)
    ext = conv_extractor()
    f1, f2 = ext(real).double().numpy(), ext(fake).double().numpy()
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)))  # independent of sqrtm
    expected = np.sum((f1.mean(0) - f2.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    got = fid.fr_rea(real, fake, ext, batch_size=32)
    assert got == pytest.approx(expected, rel=1e-6)
    assert fid.fr_rea(real, [real[:40], real[40:]], ext) == pytest.approx(0.0, abs=1e-6)


def test_frrea_needs_an_extractor_or_weights(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="extractor"):
        fid.fr_rea(torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8))
    with pytest.raises(FileNotFoundError):
        fid.inception_extractor(tmp_path / fid.FID_WEIGHTS_NAME)
    import sys
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)  # as without the `fid` extra
    with pytest.raises(ImportError, match="pytorch-fid"):
        fid.inception_extractor(tmp_path / fid.FID_WEIGHTS_NAME)


def test_real_pytorch_fid_inception_from_a_local_file(tmp_path, monkeypatch):
    """pytorch-fid's own InceptionV3 with weights from a file in its format (random values, written here): the
    2048-d pool3 features, and nothing fetched."""
    from pytorch_fid import inception as pf

    def no_download(*a, **k):
        raise AssertionError("tried to download")

    with monkeypatch.context() as m:  # a random FID-Inception in pytorch-fid's layout, to write its weights file
        m.setattr(pf, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(torch.nn.Module, "load_state_dict", lambda self, state, *a, **k: None)
        torch.manual_seed(0)
        state = pf.fid_inception_v3().state_dict()
    weights = tmp_path / fid.FID_WEIGHTS_NAME
    torch.save(state, weights)
    monkeypatch.setattr(pf, "load_state_dict_from_url", no_download)
    ext = fid.inception_extractor(weights)
    frames = torch.rand(3, 3, 64, 64)
    feats = fid.extract_features(frames, ext)
    assert tuple(feats.shape) == (3, 2048) and torch.isfinite(torch.as_tensor(feats)).all()
    assert fid.fr_rea(frames, [frames], ext) == pytest.approx(0.0, abs=1e-3)


def test_inception_extractor_loads_the_local_file(tmp_path, monkeypatch):
    """A stand-in pytorch_fid.inception: the weights must come from the given file, never from the URL."""
    import sys
    import types

    def no_download(*a, **k):
        raise AssertionError("tried to download")

    class FakeInception(torch.nn.Module):
        BLOCK_INDEX_BY_DIM = {2048: 3}

        def __init__(self, blocks):
            super().__init__()
            self.lin = torch.nn.Linear(3, 4)
            self.lin.load_state_dict(fake.load_state_dict_from_url("https://example/weights.pth"))

        def forward(self, x):
            return [self.lin(x.mean((2, 3)))[..., None, None]]

    fake = types.SimpleNamespace(load_state_dict_from_url=no_download, InceptionV3=FakeInception)
    package = types.ModuleType("pytorch_fid")
    package.inception = fake
    monkeypatch.setitem(sys.modules, "pytorch_fid", package)
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", fake)
    weights = tmp_path / fid.FID_WEIGHTS_NAME
    state = torch.nn.Linear(3, 4).state_dict()
    torch.save(state, weights)
    ext = fid.inception_extractor(weights)
    x = torch.rand(5, 3, 6, 6)
    expected = torch.nn.functional.linear(x.mean((2, 3)), state["weight"], state["bias"])
    torch.testing.assert_close(fid.extract_features(x, ext), expected.double().numpy())
    assert fake.load_state_dict_from_url is no_download  # restored


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("change,match", [
    (lambda p, g, s, n: (p[..., :57], g, s, n), r"pred \(N, K, T, 58\).*got \(3, 3, 60, 57\)"),
    (lambda p, g, s, n: (p, g[:, :50], s, n), r"gt_listener \(M, T=60, 58\).*got \(4, 50, 58\)"),
    (lambda p, g, s, n: (p, g, s[:2], n), r"gt_speaker \(N=3, T=60, 58\).*got \(2, 60, 58\)"),
    (lambda p, g, s, n: (p, g, s, n[:, :3]), r"neighbours \(N=3, M=4\).*got \(3, 3\)"),
    (lambda p, g, s, n: (p, g, np.where(np.arange(60)[:, None] == 5, np.nan, s), n), "gt_speaker contains 174 NaN"),
    (lambda p, g, s, n: (p * np.inf, g, s, n), "pred contains"),
    (lambda p, g, s, n: (p, g, s, np.where(np.arange(3)[:, None] == 1, False, n)), r"rows \[1\]"),
    (lambda p, g, s, n: (p, g, s, n * 2), "binary"),
    (lambda p, g, s, n: (p[:, :, :50], g[:, :50], s[:, :50], n), "T >= 51"),
])
def test_validation(change, match):
    with pytest.raises(ValueError, match=match):
        metrics.compute_all(*change(*make_inputs()), device="cpu")


def test_validation_kind_and_convention():
    args = make_inputs()
    with pytest.raises(ValueError, match="kind"):
        metrics.compute_all(*args, kind="au", device="cpu")
    with pytest.raises(ValueError, match="convention"):
        metrics.compute_all(*args, convention="mean", device="cpu")
    with pytest.raises(ValueError, match=r"pred \(N, K, T, 25\)"):
        metrics.compute_all(*args, kind="emotion", device="cpu")
    assert math.isnan(metrics.fr_div(torch.zeros(2, 1, 5, 3), "cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    pred, gt, spk, nb = make_inputs(n=3, k=3, m=4, t=120, seed=10)
    on_cpu = metrics.compute_all(pred, gt, spk, nb, device="cpu")
    on_gpu = metrics.compute_all(pred, gt, spk, nb, device="cuda")
    for name in ("FRCorr", "FRDist", "FRDiv", "FRDvs", "FRVar", "FRSyn"):
        assert on_gpu[name] == pytest.approx(on_cpu[name], rel=1e-9), name
