"""The nod-band gain diagnostic (reactdiff/eval/band_gain.py): the band-pass, the frame classes, the gains."""
import numpy as np
import pytest
import torch

from reactdiff import config
from reactdiff.eval.band_gain import band_gain, band_projection, cue_strength, frame_classes, gains
from reactdiff.model.export import build_model


def test_band_projection_is_an_orthogonal_projection_onto_the_band():
    p = band_projection(64, 25)
    torch.testing.assert_close(p @ p, p)
    torch.testing.assert_close(p, p.T)
    t = torch.arange(64, dtype=torch.float64)
    assert int(torch.linalg.matrix_rank(p)) == 6  # DCT coefficients 8..13 of 64 frames at 25 fps
    slow = torch.cos(torch.pi / 64 * (t + 0.5) * 2)  # DCT coefficient 2: 0.4 Hz, outside the band
    assert (p @ slow).abs().max() < 1e-12


def test_the_cue_marks_the_frames_10_to_40_after_its_peak_and_the_classes_split_by_it():
    cue = np.zeros((4, 8 + 64))
    cue[0, 8 + 20] = 1.0  # one phrase end, 20 frames into the window of row 0
    cue[1, 0] = 2.0  # one in the history: 8 frames before the window
    strength = cue_strength(cue, history=8, w=64)
    assert (strength[0] > 0).nonzero()[0].tolist() == list(range(30, 61))
    assert (strength[1] > 0).nonzero()[0].tolist() == list(range(2, 33))
    assert not strength[2:].any()
    ramp = np.tile(np.arange(8 + 64, dtype=float), (4, 1))  # a rising cue: later frames follow higher peaks
    after, elsewhere = frame_classes(ramp, history=8, w=64)
    assert not (after & elsewhere).any()
    assert after.float().mean() == pytest.approx(0.25, abs=0.02) and elsewhere.float().mean() == pytest.approx(
        0.5, abs=0.02)
    assert after[:, -1].all() and elsewhere[:, 0].all()


def test_gains_recover_a_known_per_class_gain_and_ignore_what_lies_outside_the_band():
    g = torch.Generator().manual_seed(0)
    p = band_projection(64, 25)
    n = 2000
    clean = torch.randn(n, 64, generator=g, dtype=torch.float64)
    noise = torch.randn(n, 64, generator=g, dtype=torch.float64)
    noisy = clean + noise
    rows = torch.zeros(n, 64, dtype=torch.bool)
    rows[:n // 2] = True
    scale = torch.where(rows[:, :1], 0.7, 0.2)
    out_of_band = torch.randn(n, 64, generator=g, dtype=torch.float64) @ (torch.eye(64, dtype=torch.float64) - p)
    denoised = scale * noisy + 5 * out_of_band
    res = gains(noisy, denoised, clean, noise, {"after": rows, "elsewhere": ~rows}, p)
    assert res["after"]["gain"] == pytest.approx(0.7) and res["elsewhere"]["gain"] == pytest.approx(0.2)
    # clean and noise of equal power: the ideal linear gain is ~1/2 in either class
    assert res["after"]["ideal"] == pytest.approx(0.5, abs=0.05) and res["elsewhere"]["ideal"] == pytest.approx(
        0.5, abs=0.05)


def test_an_untrained_model_keeps_exactly_c_skip_of_the_band(tiny_shards, tiny_test_shards):
    """Its raw output F is zero (zero-initialised output layers): x0-hat = c_skip x, the gain ratio 1."""
    cfg = config.load(None, ["model.size=tiny", f"data.shards={tiny_shards}", "data.window=64", "data.history=24"])
    res = band_gain(build_model(cfg).eval(), cfg, tiny_test_shards, sigmas=(1.0, 3.0), windows=16)
    for sigma, r in res.items():
        assert r["c_skip"] == pytest.approx(1 / (1 + sigma ** 2))
        for cls in ("after", "elsewhere"):
            assert r[cls]["gain"] == pytest.approx(r["c_skip"], rel=1e-6)
            assert 0 < r[cls]["ideal"] < 1 and r[cls]["power"] > 0
        assert r["ratio"] == pytest.approx(1.0, rel=1e-6)
