"""Motion statistics: does a generated listener move like a real one, and does it answer the speaker?

REACT's metrics cannot tell a smooth listener from a jittery one (DTW rewards smooth averages), so every evaluation
also reports, per stream group of the 58-d 3DMM (expression 0:52, rotation 52:55, translation 55:58):

- jitter: mean |x[t+1] - x[t]| over frames, dims, reactions and clips;
- temporal variance: the variance over time (unbiased), mean over dims, reactions and clips;
- high-frequency share: the share of the (de-meaned) signal's power above `HF_HZ`;
each as the generated value and its ratio to the true listeners of the same clips (1.0 = human), and

- speaker -> listener cross-correlation against lag (-2 s .. 2 s) for the channel pairs of `COUPLINGS`, the true
  listeners' curve next to the generated one. A positive lag means the listener follows the speaker.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..data import frame_layout as fv

GROUPS = fv.STREAM_GROUPS
HF_HZ = 3.0  # "jitter band": real listeners keep ~4% of their head-rotation power above 3 Hz
MAX_LAG_S = 2.0


@dataclasses.dataclass(frozen=True)
class Channel:
    """A scalar signal of one person: the mean of some 3DMM dims, then `ops` in order: "velocity" (x[t] - x[t-1]),
    "speed" (|velocity|), "fall" (-velocity), "smooth:N" (centred N-frame moving average)."""

    label: str
    dims: tuple[int, ...]
    ops: tuple[str, ...] = ()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (..., T, 58) -> (..., T)."""
        s = x[..., list(self.dims)].astype(np.float64).mean(-1)
        for op in self.ops:
            if op in ("velocity", "speed", "fall"):
                s = np.diff(s, axis=-1, prepend=s[..., :1])
                s = np.abs(s) if op == "speed" else -s if op == "fall" else s
            elif op.startswith("smooth:"):
                n = int(op.split(":")[1])
                kernel = np.ones(n) / n
                s = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), -1, s)
            else:
                raise ValueError(f"channel {self.label}: unknown op {op!r}")
        return s


def _exp(*names: str) -> tuple[int, ...]:
    return tuple(fv.EXP[n] for n in names)


SMILE = Channel("mouthSmile", _exp("mouthSmileLeft", "mouthSmileRight"))
BROW = Channel("browInnerUp", _exp("browInnerUp"))
JAW = Channel("jawOpen", _exp("jawOpen"))
PITCH = Channel("head pitch", (fv.HEAD_ROTATION["pitch"].start,))
SMILE_VELOCITY = Channel("mouthSmile velocity", SMILE.dims, ("velocity",))
BROW_VELOCITY = Channel("browInnerUp velocity", BROW.dims, ("velocity",))
PHRASE_END = Channel("jawOpen falling (1 s average)", JAW.dims, ("smooth:25", "fall"))
NODDING = Channel("head pitch speed (9-frame average)", PITCH.dims, ("speed", "smooth:9"))

# The speaker -> listener channel pairs every report shows (one list, used by evaluate and bench quality): smile
# mimicry, a cross-channel answer (brow raise -> smile), the head's answer to the speaker's jaw, turn-taking (jaw
# against jaw); then the onsets of smiles and brow raises (velocities: sharp peaks at the reaction lag where the
# values' long plateaus give broad humps) and nodding after the speaker's phrases end.
COUPLINGS: tuple[tuple[Channel, Channel], ...] = (
    (SMILE, SMILE),
    (BROW, SMILE),
    (JAW, PITCH),
    (JAW, JAW),
    (SMILE_VELOCITY, SMILE_VELOCITY),
    (BROW_VELOCITY, BROW_VELOCITY),
    (PHRASE_END, NODDING),
)

# The couplings the synthetic generator plants (reactdiff/data/synthetic/behaviour.py: smile and brow mimicry, nods
# after the other's phrase ends, each at the listener's own lag), with how far around that lag (seconds: 12 and 30
# frames at 25 fps) the peak is searched: a nod follows the phrase end by the lag and lasts 1-3 cycles at ~2 Hz.
# Every one raises the listener's channel, so its peak is the curve's largest positive value.
PLANTED: dict[tuple[Channel, Channel], float] = {
    (SMILE_VELOCITY, SMILE_VELOCITY): 0.48,
    (BROW_VELOCITY, BROW_VELOCITY): 0.48,
    (PHRASE_END, NODDING): 1.2,
}


def coupling_name(pair: tuple[Channel, Channel]) -> str:
    return f"speaker {pair[0].label} -> listener {pair[1].label}"


def _as_reactions(x: np.ndarray) -> np.ndarray:
    """(N, T, D) -> (N, 1, T, D); (N, K, T, D) as it is."""
    x = np.asarray(x)
    return x[:, None] if x.ndim == 3 else x


def jitter(x: np.ndarray) -> float:
    """Mean |x[t+1] - x[t]| of (..., T, D)."""
    return float(np.abs(np.diff(np.asarray(x, np.float64), axis=-2)).mean())


def temporal_variance(x: np.ndarray) -> float:
    """Variance over time (ddof 1) of (..., T, D), mean over everything else."""
    return float(np.asarray(x, np.float64).var(axis=-2, ddof=1).mean())


def high_frequency_share(x: np.ndarray, fps: float, hz: float = HF_HZ) -> float:
    """Share of the power (summed over clips, reactions and dims) of the de-meaned signal above `hz`."""
    x = np.asarray(x, np.float64)
    spec = np.abs(np.fft.rfft(x - x.mean(-2, keepdims=True), axis=-2)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-2], 1.0 / fps)
    total = spec.sum()
    return float(spec[..., freqs > hz, :].sum() / total) if total > 0 else 0.0


def group_stats(pred: np.ndarray, true: np.ndarray, fps: float) -> dict[str, dict[str, float]]:
    """Per stream group: jitter, temporal variance and HF share of pred (N, [K,] T, 58), and ratios to true."""
    pred, true = _as_reactions(pred), _as_reactions(true)
    out = {}
    for name, sl in GROUPS.items():
        p, t = pred[..., sl], true[..., sl]
        j, jt = jitter(p), jitter(t)
        v, vt = temporal_variance(p), temporal_variance(t)
        out[name] = {"jitter": j, "jitter_ratio": j / jt if jt > 0 else float("nan"),
                     "variance": v, "variance_ratio": v / vt if vt > 0 else float("nan"),
                     "hf_share": high_frequency_share(p, fps), "hf_share_true": high_frequency_share(t, fps)}
    return out


def lagged_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> np.ndarray:
    """Pearson correlation of a[t] with b[t + lag] for lag = -max_lag..max_lag, over the overlapping frames.

    a, b: (..., T) with matching leading shapes (broadcast). -> (..., 2 max_lag + 1); 0 where either side is
    constant over the overlap."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = a.shape[-1]
    if max_lag >= t - 1:
        raise ValueError(f"max lag {max_lag} needs clips longer than {max_lag + 1} frames, got {t}")
    out = []
    for lag in range(-max_lag, max_lag + 1):
        x = a[..., max(0, -lag):t - max(0, lag)]
        y = b[..., max(0, lag):t - max(0, -lag)]
        x = x - x.mean(-1, keepdims=True)
        y = y - y.mean(-1, keepdims=True)
        den = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
        num = (x * y).sum(-1)
        out.append(np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12))
    return np.stack(out, axis=-1)


def coupling_curves(speaker: np.ndarray, listeners: np.ndarray, pair: tuple[Channel, Channel],
                    max_lag: int) -> np.ndarray:
    """Per-clip (and per-reaction) cross-correlation curves: speaker (N, T, 58), listeners (N, [K,] T, 58)
    -> (N, K, 2 max_lag + 1)."""
    listeners = _as_reactions(listeners)
    s = pair[0](np.asarray(speaker))[:, None]  # (N, 1, T)
    return lagged_correlation(np.broadcast_to(s, listeners.shape[:3]), pair[1](listeners), max_lag)


def _peak(curve: np.ndarray, lags: list[int]) -> dict:
    peak = int(np.argmax(np.abs(curve)))
    return {"curve": [round(float(v), 5) for v in curve], "peak_lag": lags[peak], "peak": float(curve[peak])}


def couplings(speaker: np.ndarray, true: np.ndarray, pred: np.ndarray | None, fps: float,
              max_lag_s: float = MAX_LAG_S) -> dict:
    """Pooled (mean over clips and reactions) cross-correlation curves for every pair of COUPLINGS, for the true
    listeners and (when given) the generated ones, with the lag and value of each curve's peak."""
    max_lag = int(round(max_lag_s * fps))
    lags = list(range(-max_lag, max_lag + 1))
    out = {"lags": lags, "fps": fps, "pairs": {}}
    for pair in COUPLINGS:
        out["pairs"][coupling_name(pair)] = {
            who: _peak(coupling_curves(speaker, x, pair, max_lag).mean(axis=(0, 1)), lags)
            for who, x in (("true", true), ("generated", pred)) if x is not None}
    return out


def clip_couplings(speakers: list, trues: list, preds: list | None, fps: float,
                   max_lag_s: float = MAX_LAG_S) -> dict | None:
    """couplings for clips of different lengths: each clip's curve (mean over its reactions), then the
    frame-weighted mean over the clips long enough for the lags (the others are counted in `skipped`)."""
    max_lag = int(round(max_lag_s * fps))
    keep = [i for i, s in enumerate(speakers) if len(s) > max_lag + 1]
    if not keep:
        return None
    lags, weights = list(range(-max_lag, max_lag + 1)), [len(speakers[i]) for i in keep]
    out = {"lags": lags, "fps": fps, "pairs": {}, "clips": len(keep), "skipped": len(speakers) - len(keep)}
    for pair in COUPLINGS:
        entry = {}
        for who, xs in (("true", trues), ("generated", preds)):
            if xs is not None:
                curves = [coupling_curves(speakers[i][None], xs[i][None], pair, max_lag).mean(axis=(0, 1))
                          for i in keep]
                entry[who] = _peak(np.average(curves, axis=0, weights=weights), lags)
        out["pairs"][coupling_name(pair)] = entry
    return out


def plot_couplings(curves: dict, path, title: str = "speaker -> listener cross-correlation") -> None:
    """One panel per channel pair: the true listeners' curve against the generated ones', lag in seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import atomic

    pairs = curves["pairs"]
    lags_s = np.asarray(curves["lags"]) / curves["fps"]
    cols = min(4, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(pairs):]:
        ax.axis("off")
    for ax, (name, entry) in zip(axes.flat, pairs.items()):
        for who, style in (("true", dict(color="k", lw=2)), ("generated", dict(color="C0", lw=1.5, ls="--"))):
            if who in entry:
                ax.plot(lags_s, entry[who]["curve"], label=f"{who} listeners", **style)
        ax.axvline(0, color="0.7", lw=0.8)
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set_title(name.replace(" -> ", " ->\n"), fontsize=8)
        ax.set_xlabel("lag (s), listener after speaker >0", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("correlation")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic.save_figure(fig, path)
    plt.close(fig)


def clip_group_stats(preds: list[np.ndarray], trues: list[np.ndarray], fps: float) -> dict[str, dict[str, float]]:
    """group_stats for clips of different lengths: preds [(K, T_c, 58)], trues [(T_c, 58)]; each statistic is the
    frame-weighted mean of the clips' own (so no seam between clips is counted as motion)."""
    out = {}
    weights = np.array([len(t) for t in trues], np.float64)
    for name, sl in GROUPS.items():
        cols = {"jitter": [], "jitter_true": [], "variance": [], "variance_true": [], "hf_share": [],
                "hf_share_true": []}
        for p, t in zip(preds, trues):
            p, t = _as_reactions(p[None]), _as_reactions(t[None])
            for key, x in (("", p[..., sl]), ("_true", t[..., sl])):
                cols["jitter" + key].append(jitter(x) if x.shape[-2] > 1 else 0.0)
                cols["variance" + key].append(temporal_variance(x) if x.shape[-2] > 1 else 0.0)
                cols["hf_share" + key].append(high_frequency_share(x, fps))
        mean = {key: float(np.average(vals, weights=weights)) for key, vals in cols.items()}
        ratio = lambda a, b: a / b if b > 0 else float("nan")  # noqa: E731
        out[name] = {"jitter": mean["jitter"], "jitter_ratio": ratio(mean["jitter"], mean["jitter_true"]),
                     "variance": mean["variance"], "variance_ratio": ratio(mean["variance"], mean["variance_true"]),
                     "hf_share": mean["hf_share"], "hf_share_true": mean["hf_share_true"]}
    return out


def window_joins(frames: int, window: int, overlap: int) -> np.ndarray:
    """(frames - 1,) bool over the frame-to-frame steps x[t] - x[t-1] (index t - 1): the steps where online
    generation joins one window to the next (reactdiff/sampling/online.py), from the last frame the earlier window
    alone made to the end of the frames both made and were cross-faded; one step per join without overlap."""
    from ..sampling.online import window_starts

    joins = np.zeros(max(frames - 1, 0), bool)
    if frames <= window:
        return joins
    done = 0
    for start in window_starts(frames, window, overlap):
        if done:
            joins[start - 1:start + max(done - start, 0)] = True
        done = start + window
    return joins


def seam_jitter(preds: list[np.ndarray], trues: list[np.ndarray], window: int, overlap: int) -> dict | None:
    """Jitter at the window joins against inside the windows, per stream group, each a ratio to the true listeners'
    jitter over the same steps (1.0 = human): windows that disagree where they meet show as extra motion at the
    joins, motion the model makes within a window as extra motion inside. preds [(K, T_c, 58)] and trues
    [(T_c, 58)] per clip, each clip's windows laid out over its own length. None when no clip has a join."""
    masks = [window_joins(len(t), window, overlap) for t in trues]
    if not any(m.any() for m in masks):
        return None
    out = {"joins": int(sum(m.sum() for m in masks)), "steps": int(sum(m.size for m in masks))}
    sums = {name: np.zeros((2, 2)) for name in GROUPS}  # [pred, true] x [joins, inside]
    for p, t, m in zip(preds, trues, masks):
        for i, x in enumerate((_as_reactions(np.asarray(p)[None]), _as_reactions(np.asarray(t)[None]))):
            step = np.abs(np.diff(np.asarray(x, np.float64), axis=-2)).mean(axis=(0, 1))  # (T-1, 58)
            for name, sl in GROUPS.items():
                s = step[:, sl].mean(-1)
                sums[name][i] += s[m].sum(), s[~m].sum()
    ratio = lambda a, b: float(a / b) if b > 0 else float("nan")  # noqa: E731 - the same step counts cancel
    for name, (pred, true) in sums.items():
        out[name] = {"joins_ratio": ratio(pred[0], true[0]), "inside_ratio": ratio(pred[1], true[1])}
    return out
