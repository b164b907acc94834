"""Reaction priors: zero at x0_hat == x0, masking/continuity of the velocity prior, NumPy loop transcriptions,
pair lists, SNR fade-out, de-normalisation conventions."""
import numpy as np
import pytest
import torch

from reactdiff.data import frame_layout as fv
from reactdiff.model.priors import (COOCCURRING_PAIRS, EXCLUSIVE_PAIRS, SYMMETRIC_PAIRS, FaceStats,
                                    ReactionPriors, snr_weight)

TERMS = ("velocity", "au_symmetric", "au_cooccur", "au_exclusive")


def make_stats(convention="zscore", seed=0):
    rng = np.random.default_rng(seed)
    mean = np.concatenate([rng.uniform(0.1, 0.5, 52), rng.normal(0, 0.1, 6)])
    std = np.concatenate([rng.uniform(0.1, 0.4, 52), rng.uniform(0.02, 0.2, 6)])
    return FaceStats(mean, std, convention), mean.astype(np.float32), std.astype(np.float32)


def rand(shape, seed, scale=1.0, dtype=torch.float64):
    return torch.from_numpy(np.random.default_rng(seed).normal(0, scale, shape)).to(dtype)


# ---- NumPy loop transcriptions ---------------------------------------------------------------------------------------

def np_denorm(x, mean, std, convention):
    x = np.array(x, dtype=np.float64)[..., :58]
    if convention == "zscore":
        return x * std.astype(np.float64) + mean.astype(np.float64)
    if convention == "center":
        return x + mean.astype(np.float64)
    return x


def np_velocity(x_hat, x, hist, valid, lags, mean, std, convention):
    """Per-sample velocity prior, straight from the definition on the sequence [history | window]."""
    B, W = x.shape[:2]
    H = hist.shape[1]
    out = np.zeros(B)
    for b in range(B):
        past = np_denorm(hist[b], mean, std, convention)
        seq_hat = np.concatenate([past, np_denorm(x_hat[b], mean, std, convention)])
        seq = np.concatenate([past, np_denorm(x[b], mean, std, convention)])
        ok = np.concatenate([np.asarray(valid[b], bool), np.ones(W, bool)])
        per_lag = []
        for lag in lags:
            vals = []
            for t in range(H, H + W):
                s = t - lag
                if s < 0 or not ok[s]:
                    continue
                d = 0.0
                for k in range(52, 58):
                    d += ((seq_hat[t, k] - seq_hat[s, k]) - (seq[t, k] - seq[s, k])) ** 2
                vals.append(d / 6)
            if vals:
                per_lag.append(sum(vals) / len(vals))
        out[b] = sum(per_lag) / len(per_lag) if per_lag else 0.0
    return out


def np_au(x_hat, x, mean, std, convention):
    a_hat, a = np_denorm(x_hat, mean, std, convention), np_denorm(x, mean, std, convention)
    B, W = a.shape[:2]
    clamp = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731
    sym, co, ex = np.zeros(B), np.zeros(B), np.zeros(B)
    for b in range(B):
        for t in range(W):
            for left, right in SYMMETRIC_PAIRS:
                i, j = fv.EXP[left], fv.EXP[right]
                sym[b] += ((a_hat[b, t, i] - a_hat[b, t, j]) - (a[b, t, i] - a[b, t, j])) ** 2
            for p, q in COOCCURRING_PAIRS:
                i, j = fv.EXP[p], fv.EXP[q]
                co[b] += (clamp(a_hat[b, t, i]) * clamp(a_hat[b, t, j]) - clamp(a[b, t, i]) * clamp(a[b, t, j])) ** 2
            for p, q in EXCLUSIVE_PAIRS:
                i, j = fv.EXP[p], fv.EXP[q]
                ex[b] += max(clamp(a_hat[b, t, i]) * clamp(a_hat[b, t, j]) - clamp(a[b, t, i]) * clamp(a[b, t, j]), 0)
    return (sym / (W * len(SYMMETRIC_PAIRS)), co / (W * len(COOCCURRING_PAIRS)), ex / (W * len(EXCLUSIVE_PAIRS)))


def np_snr(sigma, sigma_data=0.5):
    return sigma_data ** 2 / (np.asarray(sigma, np.float64) ** 2 + sigma_data ** 2)


# ---- fixtures -------------------------------------------------------------------------------------------------------

def batch(B=3, W=16, H=10, C=64, seed=0):
    x0 = rand((B, W, C), seed)
    hist = rand((B, H, C), seed + 1)
    valid = torch.ones(B, H, dtype=torch.bool)
    valid[0, :4] = False  # clip started 6 frames ago
    valid[1, :] = False  # first window of a clip
    return x0, hist, valid


# ---- tests -----------------------------------------------------------------------------------------------------------

def test_zero_at_target_positive_when_perturbed_and_gradients_to_x0_hat_only():
    stats, *_ = make_stats()
    priors = ReactionPriors(stats).double()
    x0, hist, valid = batch()
    sigma = torch.tensor([0.05, 0.5, 2.0], dtype=torch.float64)

    same = priors(x0.clone(), x0, sigma, hist, valid)
    for k in TERMS + ("prior_total",):
        assert same[k].item() == 0.0, k

    x0_hat = (x0 + rand(x0.shape, 7, 0.5)).requires_grad_(True)
    x0_req, hist_req = x0.clone().requires_grad_(True), hist.clone().requires_grad_(True)
    out = priors(x0_hat, x0_req, sigma, hist_req, valid)
    for k in TERMS:
        assert out[k].item() > 0, k
        (g,) = torch.autograd.grad(out[k], x0_hat, retain_graph=True)
        assert torch.isfinite(g).all() and g.abs().sum() > 0, k
        assert g[..., 58:].abs().sum() == 0  # extra channels past the 3DMM are not touched
    out["prior_total"].backward()
    assert x0_hat.grad is not None and torch.isfinite(x0_hat.grad).all()
    assert x0_req.grad is None and hist_req.grad is None


def test_velocity_constant_offset_zero_inside_window_positive_at_history_boundary():
    stats, mean, std = make_stats()
    priors = ReactionPriors(stats, lags=(1,)).double()
    x0, hist, _ = batch(B=2, W=12, H=4)
    c = 0.7
    x0_hat = x0.clone()
    x0_hat[..., 52:58] += c
    sigma = torch.zeros(2, dtype=torch.float64)
    assert priors(x0_hat, x0, sigma)["velocity"].item() == pytest.approx(0.0, abs=1e-12)
    with_hist = priors(x0_hat, x0, sigma, hist, torch.ones(2, 4, dtype=torch.bool))["velocity"].item()
    # only t = first window frame (t-1 = last history frame) carries the jump c*std (de-normalised), out of W positions
    expected = np.mean((c * std[52:58].astype(np.float64)) ** 2) / 12
    assert with_hist == pytest.approx(expected, rel=1e-6)
    # if the last history frame is padding the jump is not seen
    hv = torch.ones(2, 4, dtype=torch.bool)
    hv[:, -1] = False
    assert priors(x0_hat, x0, sigma, hist, hv)["velocity"].item() == pytest.approx(0.0, abs=1e-12)


def test_velocity_invalid_history_is_masked():
    stats, *_ = make_stats()
    priors = ReactionPriors(stats, lags=(1, 8)).double()
    x0, hist, _ = batch(B=2, W=10, H=12)
    x0_hat = x0 + rand(x0.shape, 3, 0.3)
    sigma = torch.tensor([0.1, 0.3], dtype=torch.float64)
    k = 5
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[:, :k] = False
    ref = priors(x0_hat, x0, sigma, hist, valid)["velocity"]
    # huge values in the padding change nothing
    huge = hist.clone()
    huge[:, :k] = 1e30
    assert priors(x0_hat, x0, sigma, huge, valid)["velocity"].item() == ref.item()
    # and masking equals dropping the padded frames altogether
    dropped = priors(x0_hat, x0, sigma, hist[:, k:], valid[:, k:])["velocity"].item()
    assert dropped == pytest.approx(ref.item(), rel=1e-12)
    # a fully padded history is the same as no history
    none = torch.zeros(2, 12, dtype=torch.bool)
    assert priors(x0_hat, x0, sigma, hist, none)["velocity"].item() == pytest.approx(
        priors(x0_hat, x0, sigma)["velocity"].item(), rel=1e-12)
    # ... and differs from treating the padding as valid (the mask is really used)
    assert priors(x0_hat, x0, sigma, hist, torch.ones(2, 12, dtype=torch.bool))["velocity"].item() != pytest.approx(
        ref.item(), rel=1e-3)


@pytest.mark.parametrize("convention", ["zscore", "center", "none"])
@pytest.mark.parametrize("lags,W,H", [((1, 8), 16, 10), ((1, 8), 6, 0), ((1, 3, 12), 10, 5), ((2, 8), 12, 3)])
def test_velocity_matches_numpy_loop(convention, lags, W, H):
    stats, mean, std = make_stats(convention, seed=1)
    priors = ReactionPriors(stats, lags=lags).double()
    B = 4
    x0 = rand((B, W, 60), 10)
    x0_hat = x0 + rand(x0.shape, 11, 0.5)
    hist = rand((B, H, 60), 12)
    rng = np.random.default_rng(13)
    starts = rng.integers(0, H + 1, B) if H else np.zeros(B, int)
    valid = torch.from_numpy(np.arange(H)[None, :] >= starts[:, None])  # padding before the clip start
    if H:
        valid[-1] = torch.from_numpy(rng.random(H) < 0.5)  # and an arbitrary mask
    sigma = torch.from_numpy(rng.uniform(0.01, 3, B))
    got = priors(x0_hat, x0, sigma, hist, valid)["velocity"].item()
    want = float(np.mean(np_snr(sigma.numpy()) * np_velocity(x0_hat.numpy(), x0.numpy(), hist.numpy(), valid.numpy(),
                                                             lags, mean, std, convention)))
    assert got == pytest.approx(want, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("convention", ["zscore", "center", "none"])
def test_au_terms_match_numpy_loop(convention):
    stats, mean, std = make_stats(convention, seed=2)
    priors = ReactionPriors(stats, velocity_weight=0.3, au_weight=0.05, au_term_weights=(1.0, 2.0, 3.0)).double()
    B, W = 3, 7
    scale = 1.0 if convention == "zscore" else 0.5
    x0 = rand((B, W, 58), 20, scale)
    x0_hat = x0 + rand(x0.shape, 21, scale)  # de-normalised values spread over ~[-1, 2]: the clamps are exercised
    sigma = torch.tensor([0.02, 0.4, 1.5], dtype=torch.float64)
    out = priors(x0_hat, x0, sigma)
    w = np_snr(sigma.numpy())
    sym, co, ex = np_au(x0_hat.numpy(), x0.numpy(), mean, std, convention)
    want = {"au_symmetric": np.mean(w * sym), "au_cooccur": np.mean(w * co), "au_exclusive": np.mean(w * ex)}
    for k, v in want.items():
        assert v > 0
        assert out[k].item() == pytest.approx(v, rel=1e-6, abs=1e-12), k
    vel = np.mean(w * np_velocity(x0_hat.numpy(), x0.numpy(), np.zeros((B, 0, 58)), np.zeros((B, 0), bool), (1, 8),
                                  mean, std, convention))
    total = 0.3 * vel + 0.05 * (want["au_symmetric"] + 2 * want["au_cooccur"] + 3 * want["au_exclusive"])
    assert out["prior_total"].item() == pytest.approx(total, rel=1e-6)


def test_pair_lists():
    names = fv.EXP_NAMES
    lefts = [n for n in names if n.endswith("Left")]
    assert all(n[:-4] + "Right" in fv.EXP for n in lefts)  # every Left has a Right partner
    assert all(n[:-5] + "Left" in fv.EXP for n in names if n.endswith("Right"))
    directional = {"jawLeft", "mouthLeft"}  # shifts of a midline structure, not halves of one action
    assert len(SYMMETRIC_PAIRS) == len(lefts) - len(directional) == 18
    assert {p[0] for p in SYMMETRIC_PAIRS} == set(lefts) - directional
    assert all(r == l[:-4] + "Right" for l, r in SYMMETRIC_PAIRS)  # noqa: E741
    assert 10 <= len(COOCCURRING_PAIRS) <= 16 and 10 <= len(EXCLUSIVE_PAIRS) <= 16
    seen = set()
    for pairs in (SYMMETRIC_PAIRS, COOCCURRING_PAIRS, EXCLUSIVE_PAIRS):
        for a, b in pairs:
            assert a in fv.EXP and b in fv.EXP and a != b
            key = frozenset((a, b))
            assert key not in seen, (a, b)  # no repeats within or across lists
            seen.add(key)
    assert ("jawLeft", "jawRight") in EXCLUSIVE_PAIRS and ("mouthLeft", "mouthRight") in EXCLUSIVE_PAIRS


def test_snr_factor_fades_priors_out_at_high_noise():
    stats, *_ = make_stats()
    priors = ReactionPriors(stats).double()
    x0, hist, valid = batch()
    x0_hat = x0 + rand(x0.shape, 5, 0.5)
    s = lambda v: torch.full((3,), v, dtype=torch.float64)  # noqa: E731
    unweighted = priors(x0_hat, x0, s(0.0), hist, valid)
    assert unweighted["prior_total"].item() > 0
    small = priors(x0_hat, x0, s(1e-4), hist, valid)
    large = priors(x0_hat, x0, s(1e4), hist, valid)
    for k in TERMS + ("prior_total",):
        assert small[k].item() == pytest.approx(unweighted[k].item(), rel=1e-6)
        assert large[k].item() <= 1e-8 * unweighted[k].item() + 1e-30
    assert large["prior_total"].item() < 1e-8
    mixed = priors(x0_hat, x0, torch.tensor([0.0, 1e4, 0.5], dtype=torch.float64), hist, valid)
    assert 0 < mixed["prior_total"].item() < unweighted["prior_total"].item()
    assert torch.allclose(snr_weight(torch.tensor([0.0, 0.5, 1e3]), 0.5), torch.tensor([1.0, 0.5, 0.25 / (1e6 + 0.25)]))


def test_denormalise_conventions():
    mean = np.arange(58, dtype=np.float32) / 10
    std = np.linspace(0.5, 2.0, 58, dtype=np.float32)
    x = torch.randn(2, 5, 61)
    for convention, want in (("zscore", x[..., :58] * torch.from_numpy(std) + torch.from_numpy(mean)),
                             ("center", x[..., :58] + torch.from_numpy(mean)), ("none", x[..., :58])):
        got = FaceStats(mean, std, convention).denormalise(x)
        assert got.shape == x.shape
        assert torch.allclose(got[..., :58], want) and torch.equal(got[..., 58:], x[..., 58:]), convention
    # concrete raw values: zscore 1 std above the mean of channel 3 is 0.3 + std[3]
    one = torch.zeros(1, 1, 58)
    one[..., 3] = 1.0
    assert FaceStats(mean, std, "zscore").denormalise(one)[0, 0, 3].item() == pytest.approx(0.3 + std[3], rel=1e-6)
    assert FaceStats(mean, std, "center").denormalise(one)[0, 0, 3].item() == pytest.approx(1.3, rel=1e-6)
    assert torch.equal(FaceStats.identity().denormalise(x), x)
    with pytest.raises(ValueError):
        FaceStats(mean, std, "minmax")
    with pytest.raises(ValueError):
        FaceStats(mean, np.zeros(58), "zscore")
    with pytest.raises(ValueError):
        FaceStats(mean[:10], std[:10], "none")


def test_degenerate_shapes_and_half_precision_are_finite():
    priors = ReactionPriors(FaceStats.identity(), lags=(1, 8))
    x0 = torch.randn(2, 1, 58)  # one frame, no history: no valid lag position at all
    out = priors(x0 + 1, x0, torch.tensor(0.3))
    assert out["velocity"].item() == 0.0 and all(torch.isfinite(v) for v in out.values())
    xb = torch.randn(2, 9, 58, dtype=torch.bfloat16)
    out = priors((xb + 0.3).requires_grad_(True), xb, torch.tensor([0.1, 1.0]), torch.randn(2, 0, 58),
                 torch.zeros(2, 0, dtype=torch.bool))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
    assert (priors.velocity_weight, priors.au_weight) == (1.0, 0.01)
    p = ReactionPriors(FaceStats.identity(), velocity_weight=2.0, au_term_weights=(1.0, 1.0, 0.5))
    assert p.velocity_weight == 2.0 and p.au_term_weights == (1.0, 1.0, 0.5)
    with pytest.raises(ValueError):
        priors(x0, torch.randn(2, 2, 58), torch.tensor(0.3))


# ---- the loss-scale kinematics (model.kinematics=loss) ------------------------------------------------------------

def np_kinematics_loss(x_hat, x, hist, valid, lags, mean, std, convention):
    """Velocity (lags) and acceleration terms of the standardised error over all 58 dims, from the definition on
    the sequence [history | window] (the error is 0 on the known past)."""
    B, W = x.shape[:2]
    H = hist.shape[1]
    vel, acc = np.zeros(B), np.zeros(B)
    for b in range(B):
        past = np_denorm(hist[b], mean, std, convention)
        e = np.concatenate([past - past, (np_denorm(x_hat[b], mean, std, convention)
                                          - np_denorm(x[b], mean, std, convention))]) / std.astype(np.float64)
        ok = np.concatenate([np.asarray(valid[b], bool), np.ones(W, bool)])
        per_lag = []
        for lag in lags:
            vals = [np.mean((e[t] - e[t - lag]) ** 2) for t in range(H, H + W) if t - lag >= 0 and ok[t - lag]]
            if vals:
                per_lag.append(np.mean(vals))
        vel[b] = np.mean(per_lag) if per_lag else 0.0
        vals = [np.mean((e[t] - 2 * e[t - 1] + e[t - 2]) ** 2) for t in range(H, H + W) if t - 2 >= 0 and ok[t - 2]]
        acc[b] = np.mean(vals) if vals else 0.0
    return vel, acc


@pytest.mark.parametrize("convention", ["zscore", "center"])
def test_loss_scale_kinematics_match_the_definition_at_the_edm_weight(convention):
    from reactdiff.model.priors import edm_weight

    stats, mean, std = make_stats(convention)
    x0, hist, valid = batch(C=58)
    x0_hat = x0 + rand(x0.shape, 3, 0.3)
    sigma = torch.tensor([0.05, 0.7, 4.0], dtype=torch.float64)
    priors = ReactionPriors(stats, lags=(1, 8), kinematics="loss", acceleration_weight=0.5, sigma_data=1.0).double()
    out = priors(x0_hat, x0, sigma, hist, valid)
    vel, acc = np_kinematics_loss(x0_hat.numpy(), x0.numpy(), hist.numpy(), valid.numpy(), (1, 8), mean, std,
                                  convention)
    lam = (sigma.numpy() ** 2 + 1) / sigma.numpy() ** 2
    assert out["velocity"].item() == pytest.approx((lam * vel).mean(), rel=1e-9)
    assert out["acceleration"].item() == pytest.approx((lam * acc).mean(), rel=1e-9)
    assert torch.allclose(edm_weight(sigma, 1.0), torch.from_numpy(lam))
    # the AU terms: raw activations over the blendshapes' mean variance, at the same weight
    sym, co, ex = np_au(x0_hat.numpy(), x0.numpy(), mean, std, convention)
    var = np.mean(std[:52].astype(np.float64) ** 2)
    assert out["au_symmetric"].item() == pytest.approx((lam * sym / var).mean(), rel=1e-6)
    assert out["au_exclusive"].item() == pytest.approx((lam * ex / var).mean(), rel=1e-6)
    total = out["velocity"] + 0.5 * out["acceleration"] + 0.01 * (out["au_symmetric"] + out["au_cooccur"]
                                                                  + out["au_exclusive"])
    assert out["prior_total"].item() == pytest.approx(total.item(), rel=1e-9)
    # at the target: zero; a smooth (constant-offset) error costs no velocity/acceleration, a jittery one does
    assert priors(x0.clone(), x0, sigma, hist, valid)["prior_total"].item() == pytest.approx(0.0, abs=1e-12)
    no_past = torch.zeros(3, 0, 58, dtype=torch.float64), torch.zeros(3, 0, dtype=torch.bool)
    smooth = priors(x0 + 0.3 * torch.ones_like(x0) * torch.from_numpy(std).double(), x0, sigma, *no_past)
    jitter = priors(x0 + 0.3 * torch.from_numpy(std).double() * (-1.0) ** torch.arange(16.0).view(1, -1, 1), x0,
                    sigma, *no_past)
    assert smooth["velocity"].item() < 1e-20 and smooth["acceleration"].item() < 1e-20
    assert jitter["velocity"].item() > 0.1 and jitter["acceleration"].item() > 4 * jitter["velocity"].item()


def test_raw_pose_is_the_legacy_prior_and_the_default_of_the_class():
    stats, *_ = make_stats()
    x0, hist, valid = batch(C=58)
    x0_hat = x0 + rand(x0.shape, 4, 0.3)
    sigma = torch.tensor([0.05, 0.7, 4.0], dtype=torch.float64)
    legacy = ReactionPriors(stats).double()(x0_hat, x0, sigma, hist, valid)
    assert "acceleration" not in legacy
    explicit = ReactionPriors(stats, kinematics="raw_pose").double()(x0_hat, x0, sigma, hist, valid)
    assert all(legacy[k].item() == explicit[k].item() for k in legacy)
    with pytest.raises(ValueError, match="kinematics 'pose'"):
        ReactionPriors(stats, kinematics="pose")
