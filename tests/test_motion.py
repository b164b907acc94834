"""Motion statistics against hand-computed values: jitter, temporal variance, high-frequency share, lagged
cross-correlation and the pooled coupling curves."""
import numpy as np
import pytest

from reactdiff.data import frame_layout as fv
from reactdiff.eval import motion


def test_jitter_variance_and_their_ratios_per_group():
    x = np.zeros((1, 4, 58))
    x[0, :, 0] = [0.0, 1.0, 3.0, 6.0]  # expression dim 0: diffs 1, 2, 3
    x[0, :, 52] = [0.0, 2.0, 0.0, 2.0]  # rotation dim 52: diffs 2, 2, 2
    assert motion.jitter(x[..., :1]) == pytest.approx(2.0)
    assert motion.temporal_variance(x[..., :1]) == pytest.approx(np.var([0, 1, 3, 6], ddof=1))
    true = x.copy()
    true[0, :, 0] *= 0.5
    true[0, :, 52] = [0.0, 1.0, 2.0, 3.0]
    stats = motion.group_stats(x[:, None], true, fps=25)
    assert stats["expression"]["jitter_ratio"] == pytest.approx(2.0)  # 52 dims: only dim 0 moves, on both sides
    assert stats["expression"]["variance_ratio"] == pytest.approx(4.0)
    assert stats["rotation"]["jitter_ratio"] == pytest.approx(2.0 / 1.0)
    ratio = np.var([0, 2, 0, 2], ddof=1) / np.var([0, 1, 2, 3], ddof=1)
    assert stats["rotation"]["variance_ratio"] == pytest.approx(ratio)
    assert np.isnan(stats["translation"]["jitter_ratio"])  # the true listener never moves there


def test_high_frequency_share():
    t = np.arange(250) / 25.0
    slow, fast = np.sin(2 * np.pi * 1.0 * t), np.sin(2 * np.pi * 5.0 * t)
    assert motion.high_frequency_share(slow[None, :, None], 25) < 1e-6
    assert motion.high_frequency_share(fast[None, :, None], 25) > 1 - 1e-6
    both = np.stack([slow, 0.5 * fast], -1)[None]  # powers 1 : 0.25
    assert motion.high_frequency_share(both, 25) == pytest.approx(0.2, abs=1e-6)


def test_lagged_correlation_finds_the_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    b = np.roll(a, 7)  # b[t] = a[t - 7]: b follows a by 7 frames
    r = motion.lagged_correlation(a, b, 20)
    assert int(np.argmax(r)) - 20 == 7 and r.max() > 0.97
    # by hand at lag 0: Pearson of the full overlap
    assert r[20] == pytest.approx(np.corrcoef(a, b)[0, 1])
    # a constant side gives 0, not NaN
    assert np.all(motion.lagged_correlation(np.ones(50), rng.normal(size=50), 5) == 0)
    with pytest.raises(ValueError, match="longer than"):
        motion.lagged_correlation(a[:10], b[:10], 20)


def test_couplings_pool_clips_and_reactions_and_report_the_peak():
    rng = np.random.default_rng(1)
    n, t, lag = 4, 200, 9
    speaker = rng.normal(0, 0.1, (n, t, 58))
    listener = rng.normal(0, 0.1, (n, t, 58))
    smile = [fv.EXP["mouthSmileLeft"], fv.EXP["mouthSmileRight"]]
    drive = rng.normal(size=(n, t))
    speaker[..., smile] = drive[..., None]
    listener[..., smile] = np.roll(drive, lag, axis=1)[..., None]  # the listener smiles `lag` frames later
    generated = np.repeat(listener[:, None], 3, axis=1)
    out = motion.couplings(speaker, listener, generated, fps=25)
    pair = out["pairs"]["speaker mouthSmile -> listener mouthSmile"]
    assert pair["true"]["peak_lag"] == lag and pair["generated"]["peak_lag"] == lag
    assert pair["true"]["curve"] == pair["generated"]["curve"] and len(out["lags"]) == 101  # -2 s .. 2 s at 25 fps
    assert pair["true"]["peak"] > 0.95
    assert set(out["pairs"]) == {motion.coupling_name(p) for p in motion.COUPLINGS}


def test_channel_ops():
    x = np.zeros((1, 5, 58))
    x[0, :, 52] = [0.0, 1.0, 3.0, 2.0, 2.0]
    assert motion.Channel("v", (52,), ("velocity",))(x).tolist() == [[0.0, 1.0, 2.0, -1.0, 0.0]]
    assert motion.Channel("s", (52,), ("speed",))(x).tolist() == [[0.0, 1.0, 2.0, 1.0, 0.0]]
    assert motion.Channel("f", (52,), ("fall",))(x).tolist() == [[0.0, -1.0, -2.0, 1.0, 0.0]]
    assert motion.Channel("m", (52,), ("smooth:3",))(x)[0, 2] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown op"):
        motion.Channel("bad", (52,), ("wiggle",))(x)


def test_a_planted_couplings_peak_is_its_positive_one_searched_over_the_same_seconds_at_any_fps():
    """bench quality's planted couplings all raise the listener's channel: an anti-correlation at the edge of the
    search (turn-taking) stronger than the planted peak is not the coupling; the search spans the same seconds at
    25 and 30 fps."""
    from reactdiff.bench.quality import compare_coupling, planted_couplings

    curve = np.zeros(25)
    curve[0], curve[13] = -0.10, 0.08  # reach 12: a -0.10 at offset -12, the planted +0.08 at +1
    generated = np.zeros(25)
    generated[13], generated[20] = 0.05, 0.06
    c = compare_coupling(12, curve, generated)
    assert (c["data_offset"], c["data_r"], c["model_offset"]) == (1, 0.08, 8)
    assert c["model_r_at_data_peak"] == 0.05 and c["ratio"] == pytest.approx(0.625)
    assert (c["data_width"], c["model_width"]) == (1, 1)  # single-frame peaks
    sharp = np.exp(-0.5 * (np.arange(25) - 12.0) ** 2)  # a 1-frame-sd bump: 3 frames above half height
    c = compare_coupling(12, sharp, np.convolve(sharp, np.ones(5) / 5, mode="same"))  # the same, blurred
    assert (c["data_width"], c["model_width"]) == (3, 5)

    rng = np.random.default_rng(2)
    n, t = 3, 300
    speaker, listener = rng.normal(0, 0.1, (n, t, 58)), rng.normal(0, 0.1, (n, t, 58))
    brow = fv.EXP["browInnerUp"]
    drive = rng.normal(size=(n, t)).cumsum(1)
    speaker[..., brow] = drive
    lags = np.array([10, 12, 14])
    for i, lag in enumerate(lags):
        listener[i, :, brow] = np.roll(drive[i], lag)  # each row's listener follows at its own lag
    for fps, reach in ((25.0, 12), (30.0, 14)):
        key = "speaker browInnerUp velocity -> listener browInnerUp velocity"
        got_reach, aligned = planted_couplings(speaker, listener, lags, fps)[key]
        assert got_reach == reach and aligned.shape == (2 * reach + 1,)
        assert int(np.argmax(aligned)) == reach and aligned.max() > 0.9  # every row peaks at its own lag


def test_window_joins_follow_the_sampler_s_windows_and_the_last_flush_one():
    """20 frames in 8-frame windows overlapping 2: windows at 0, 6, 12; each join covers the step into the shared
    frames and the steps through them. Without overlap one step per join; the last window, flush with the end,
    shares what it shares; a clip within one window has no join."""
    from reactdiff.sampling.online import place_window, window_starts

    assert np.nonzero(motion.window_joins(20, 8, 2))[0].tolist() == [5, 6, 7, 11, 12, 13]
    assert np.nonzero(motion.window_joins(30, 8, 0))[0].tolist() == [7, 15, 21, 22, 23]  # windows 0, 8, 16, 22
    assert not motion.window_joins(8, 8, 2).any() and motion.window_joins(5, 8, 2).shape == (4,)
    # the same steps as where place_window cross-fades: frames written twice, and the step into them
    import torch

    frames, window, overlap = 50, 16, 4
    out, done, faded = torch.zeros(1, frames, 1), 0, []
    for start in window_starts(frames, window, overlap):
        faded += list(range(start - 1, done)) if done else []
        done = place_window(out, torch.ones(1, window, 1), start, done)
    assert np.nonzero(motion.window_joins(frames, window, overlap))[0].tolist() == faded


def test_seam_jitter_tells_joins_from_inside_the_windows():
    """A generated listener that moves like the true one inside its windows and jumps at every join: ratio 1 inside,
    the jump's share at the joins; each group on its own; clips of different lengths pooled by their steps."""
    rng = np.random.default_rng(0)
    trues, preds = [], []
    for frames in (40, 60):
        steps = rng.choice([-1.0, 1.0], size=(frames - 1, 58)) * 0.1  # |step| 0.1 everywhere
        true = np.concatenate([np.zeros((1, 58)), steps.cumsum(0)])
        joins = motion.window_joins(frames, 16, 4)
        bumped = steps.copy()
        bumped[joins, 55:58] = np.sign(bumped[joins, 55:58]) * 0.4  # translation 4x as fast at the joins
        pred = np.concatenate([np.zeros((1, 58)), bumped.cumsum(0)])
        trues.append(true)
        preds.append(np.stack([pred, pred]))  # K = 2
    s = motion.seam_jitter(preds, trues, 16, 4)
    assert s["joins"] == sum(motion.window_joins(len(t), 16, 4).sum() for t in trues) and s["steps"] == 39 + 59
    assert s["translation"]["joins_ratio"] == pytest.approx(4.0)
    assert s["translation"]["inside_ratio"] == pytest.approx(1)
    for g in ("expression", "rotation"):
        assert s[g]["joins_ratio"] == pytest.approx(1) and s[g]["inside_ratio"] == pytest.approx(1)
    assert motion.seam_jitter([np.zeros((2, 10, 58))], [np.zeros((10, 58))], 16, 4) is None  # one window: no join
