"""Power per frequency band: at which speeds a generated listener moves more (or less) than the real ones.

The jitter and variance ratios (motion.py) say how much; this says where in the spectrum. Every clip is cut into
half-overlapping `SEGMENT`-frame stretches (the sampler's window), each one's mean removed (the level is the variance
ratio's business) and Hann-windowed; their power spectra are summed per stream group over stretches, dims, reactions
and clips, and the generated power is divided by the true listeners' of the same clips: per frequency bin (the plot)
and per band of `EDGES_HZ` (the tables). A ratio of 1.0 at every speed is a listener that moves like the data's; an
even excess over all bands is amplitude, an excess above a few Hz is fast motion the data does not have.
"""
from __future__ import annotations

import numpy as np

from .motion import GROUPS

SEGMENT = 64  # frames per stretch: the sampling window (2.6 s at 25 fps, 2.1 s at 30), bins of fps / 64 Hz
EDGES_HZ = (0.0, 1.0, 3.0, 6.0)  # bands 0-1, 1-3, 3-6 Hz and 6 Hz to Nyquist


def segment_power(x: np.ndarray, segment: int = SEGMENT) -> np.ndarray | None:
    """x (..., T, D) -> (segment // 2 + 1, D): the power spectra of its de-meaned, Hann-windowed, half-overlapping
    `segment`-frame stretches, summed over the stretches and every leading axis; None when T < segment."""
    x = np.asarray(x, np.float64)
    frames = x.shape[-2]
    if frames < segment:
        return None
    x = x.reshape(-1, frames, x.shape[-1])
    window = np.hanning(segment)[:, None]
    total = np.zeros((segment // 2 + 1, x.shape[-1]))
    for start in range(0, frames - segment + 1, segment // 2):
        stretch = x[:, start:start + segment]
        stretch = (stretch - stretch.mean(1, keepdims=True)) * window
        total += (np.abs(np.fft.rfft(stretch, axis=1)) ** 2).sum(0)
    return total


def _ratio(pred: np.ndarray, true: np.ndarray) -> list[float]:
    return [float(p / t) if t > 0 else float("nan") for p, t in zip(pred, true)]


def band_power(preds: list[np.ndarray], trues: list[np.ndarray], fps: float, segment: int = SEGMENT,
               edges_hz: tuple[float, ...] = EDGES_HZ) -> dict | None:
    """Generated over true power per frequency bin and per band, per stream group. preds [(K, T_c, 58) or
    (T_c, 58)] and trues [(T_c, 58)] per clip (clips may differ in length; clips shorter than `segment` are left
    out). None when no clip is `segment` frames long."""
    pred_sum = true_sum = None
    for p, t in zip(preds, trues):
        sp, st = segment_power(p, segment), segment_power(t, segment)
        if st is None:
            continue
        k = np.shape(p)[0] if np.ndim(p) == 3 else 1
        pred_sum = sp / k if pred_sum is None else pred_sum + sp / k  # per reaction, as the truth is one
        true_sum = st if true_sum is None else true_sum + st
    if true_sum is None:
        return None
    freqs = np.fft.rfftfreq(segment, 1.0 / fps)
    edges = [e for e in edges_hz if e < fps / 2] + [fps / 2 + 1e-9]
    bands = list(zip(edges, edges[1:]))
    in_band = [(freqs >= lo) & (freqs < hi) for lo, hi in bands]
    out = {"segment": segment, "fps": fps, "freqs_hz": freqs.tolist(),
           "bands_hz": [[lo, min(hi, fps / 2)] for lo, hi in bands]}
    for name, dims in GROUPS.items():
        p, t = pred_sum[:, dims].sum(-1), true_sum[:, dims].sum(-1)
        out[name] = {"ratio": _ratio([p[m].sum() for m in in_band], [t[m].sum() for m in in_band]),
                     "share_true": [float(t[m].sum() / t.sum()) if t.sum() > 0 else float("nan") for m in in_band],
                     "ratio_per_bin": _ratio(p, t)}
    return out


def band_label(band: list[float]) -> str:
    return f"{band[0]:g}-{band[1]:g} Hz"


def band_cells(bands: dict) -> list[str]:
    """One table cell per stream group: its ratios per band, "a / b / c / d" (report.md and bench quality)."""
    return [" / ".join(f"{v:.2f}" for v in bands[g]["ratio"]) for g in GROUPS]


def plot_band_power(rows: dict[str, dict], path) -> None:
    """One panel per stream group: generated / true power against frequency (log scale) for every row that has
    it; the line at 1 is the true listeners."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import atomic

    fig, axes = plt.subplots(1, len(GROUPS), figsize=(4.2 * len(GROUPS), 3.4), sharey=True)
    for ax, group in zip(np.atleast_1d(axes), GROUPS):
        ax.axhline(1.0, color="k", lw=1, label="true listeners")
        for i, (name, bands) in enumerate(rows.items()):
            freqs, ratio = np.asarray(bands["freqs_hz"][1:]), np.asarray(bands[group]["ratio_per_bin"][1:])
            keep = np.isfinite(ratio) & (ratio > 0)  # (the DC bin is ~0 after de-meaning; a still face has no power)
            style = dict(color="C0", lw=2) if name == "model" else dict(color=f"C{i % 8 + 1}", lw=1, ls="--")
            ax.plot(freqs[keep], ratio[keep], label=name, **style)
        ax.set_yscale("log")
        ax.set_title(group)
        ax.set_xlabel("Hz")
        ax.grid(alpha=0.3, which="both")
    np.atleast_1d(axes)[0].set_ylabel("power, generated / true")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.suptitle(f"power per frequency within {next(iter(rows.values()))['segment']}-frame stretches")
    fig.tight_layout()
    atomic.save_figure(fig, path)
    plt.close(fig)
