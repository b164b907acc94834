"""Power per frequency band (reactdiff/eval/band_power.py) against hand-built signals."""
import numpy as np
import pytest

from reactdiff.eval.band_power import band_power, plot_band_power, segment_power

FPS = 25.0


def sines(frames: int, parts: dict[int, list[tuple[float, float]]], seed: int = 0) -> np.ndarray:
    """(frames, 58): dim -> [(Hz, amplitude)], each with a random phase."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / FPS
    x = np.zeros((frames, 58))
    for dim, waves in parts.items():
        for hz, amp in waves:
            x[:, dim] += amp * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
    return x


def test_twice_the_amplitude_is_four_times_the_power_in_every_band_and_a_level_is_nothing():
    true = [sines(300, {0: [(0.5, 1.0), (2.0, 0.5), (4.5, 0.2), (8.0, 0.1)], 53: [(2.0, 0.3)], 56: [(0.6, 0.2)]}),
            sines(200, {0: [(2.0, 0.5)], 53: [(4.0, 0.1)], 56: [(2.0, 0.05)]}, seed=1)]
    pred = [np.stack([2 * t + 5.0, 2 * t - 3.0]) for t in true]  # K = 2 reactions, each with an offset level
    out = band_power(pred, true, FPS)
    assert out["bands_hz"] == [[0.0, 1.0], [1.0, 3.0], [3.0, 6.0], [6.0, 12.5]]
    for group in ("expression", "rotation", "translation"):
        ratio = np.array(out[group]["ratio"])
        finite = np.isfinite(ratio)
        np.testing.assert_allclose(ratio[finite], 4.0, rtol=1e-9)
    np.testing.assert_allclose(sum(out["expression"]["share_true"]), 1.0)


def test_fast_motion_the_data_lacks_shows_in_its_band_alone():
    true = [sines(400, {d: [(0.5, 1.0), (2.0, 0.4)] for d in (0, 1, 52, 53, 55)}, seed=s) for s in range(3)]
    pred = [np.stack([t + sines(400, {0: [(5.0, 0.3)], 53: [(9.0, 0.2)]}, seed=10 + s)]) for s, t in enumerate(true)]
    out = band_power(pred, true, FPS)
    expression, rotation = np.array(out["expression"]["ratio"]), np.array(out["rotation"]["ratio"])
    np.testing.assert_allclose(expression[:2], 1.0, atol=0.02)  # below 3 Hz: the same motion
    assert expression[2] > 50  # 5 Hz: the data has (almost) none
    np.testing.assert_allclose(rotation[:3], 1.0, atol=0.02)
    assert rotation[3] > 50  # 9 Hz
    np.testing.assert_allclose(out["translation"]["ratio"][:2], 1.0, atol=1e-9)
    freqs, per_bin = np.array(out["freqs_hz"]), np.array(out["expression"]["ratio_per_bin"])
    assert abs(freqs[np.nanargmax(per_bin)] - 5.0) < 25 / 64 * 1.5  # the excess is where it was added


def test_clips_shorter_than_a_stretch_are_left_out_and_none_when_no_clip_is_long_enough():
    assert segment_power(np.zeros((63, 58))) is None
    short = [sines(40, {0: [(1.0, 1.0)]})]
    assert band_power([s[None] for s in short], short, FPS) is None
    long = sines(128, {0: [(1.0, 1.0)]})
    with_short = band_power([s[None] for s in short + [long]], short + [long], FPS)
    alone = band_power([long[None]], [long], FPS)
    assert with_short["expression"]["ratio"] == alone["expression"]["ratio"]


def test_at_30_fps_the_last_band_ends_at_nyquist(tmp_path):
    true = [sines(200, {0: [(1.0, 1.0)], 53: [(2.0, 1.0)], 56: [(1.0, 1.0)]})]
    out = band_power([1.5 * t[None] for t in true], true, 30.0)
    assert out["bands_hz"][-1] == [6.0, 15.0] and out["fps"] == 30.0
    plot_band_power({"model": out, "baseline: random": out}, tmp_path / "bands.png")
    assert (tmp_path / "bands.png").stat().st_size > 10_000


@pytest.mark.parametrize("k", [1, 3])
def test_the_ratio_is_per_reaction_whatever_k(k):
    true = [sines(256, {0: [(2.0, 1.0)], 52: [(1.0, 1.0)], 57: [(0.7, 1.0)]})]
    out = band_power([np.repeat(true[0][None], k, 0)], true, FPS)
    np.testing.assert_allclose([r for r in out["expression"]["ratio"] if r == r], 1.0)
