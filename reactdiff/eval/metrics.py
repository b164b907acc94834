"""REACT challenge metrics on generated listener reactions (de-normalised 3DMM, 58-d, or emotion, 25-d).

Shapes: pred (N, K, T, D) the K reactions generated for each of N speaker clips (neighbour-matrix rows);
gt_listener (M, T, D) the ground-truth listener reactions, indexed by neighbour-matrix column; gt_speaker (N, T, D)
the speakers; neighbours (N, M) binary (row k: the reactions appropriate to speaker clip k). All maths in float64.

- FRCorr: per clip, sum over the K samples of max over appropriate j of CCC(sample, gt_j); mean over clips.
- FRDist: the same with min over j of DTW (tslearn's definition, see dtw.py); for emotion the DTW of the AU (15),
  valence/arousal (2) and expression (8) slices weighted 1/15, 1, 1/8 and summed, as the REACT code does.
  convention="react2024" keeps the sum over the K samples; "reactface" divides it by K (the factor-K gap between the
  REACT 2024 baseline and ReactFace tables).
- FRDiv: squared difference between the K samples of a clip, summed over ordered pairs / (K (K-1) T D), mean over
  clips. FRDvs: the same across the N clips for each sample index, mean over indices. FRVar: variance over time
  (unbiased, torch.var's default as in the REACT code), mean over dims, samples and clips.
- FRSyn: time-lagged cross-correlation with the speaker over lags -49..49 (Pearson per dim on the overlapping
  frames, mean over dims); offset = |argmax - centre|, mean over clips and all K samples. reference_quirks=True
  scores only the first sample of each clip, as the REACT code's early `return` does.

Deliberate differences from the REACT code, where it is undefined: CCC uses its closed form (a constant dimension
gives 0, not NaN); FRSyn averages the correlation over the dimensions where it is defined (constant overlap -> left
out) instead of propagating NaN; FRDiv (K = 1) and FRDvs (N = 1) are NaN rather than 0 / a division by zero.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..data.frame_layout import EMOTION_DIM, FV_DIM
from .dtw import default_device, dtw_indexed

DIMS = {"3dmm": FV_DIM, "emotion": EMOTION_DIM}
METRICS = ("FRCorr", "FRDist", "FRDiv", "FRDvs", "FRVar", "FRSyn")  # what compute_all scores
EMOTION_SLICES = ((0, 15, 1 / 15), (15, 17, 1.0), (17, 25, 1 / 8))  # AUs, valence/arousal, expressions
CONVENTIONS = ("react2024", "reactface")
MAX_LAG = 49  # 2 s at 25 fps: lags -49..49, as the REACT code's calculate_tlcc(seconds=2, fps=25)
CCC_EPS = 1e-8  # added to the CCC denominator by the REACT code
_BUDGET = 256 << 20  # bytes of float64 work per chunk for the non-DTW metrics


def _tensor(a, name: str) -> torch.Tensor:
    t = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.bool)):
        raise ValueError(f"{name} must be a real-valued array; got dtype {t.dtype}")
    return t


def _f64(t: torch.Tensor, device) -> torch.Tensor:
    return t.to(device=device, dtype=torch.float64)


def _chunks(n: int, bytes_per_item: int, budget: int = _BUDGET):
    step = max(1, budget // max(1, bytes_per_item))
    for s in range(0, n, step):
        yield slice(s, min(s + step, n))


def _check_shape(t: torch.Tensor, name: str, expected: tuple) -> None:
    """expected: ints or None (any); names the argument, the expected and the actual shape."""
    ok = t.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, t.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}; got {tuple(t.shape)}")


def _check_finite(t: torch.Tensor, name: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN/inf value(s)")


def validate(pred, gt_listener, gt_speaker, neighbours, *, kind: str = "3dmm", max_lag: int = MAX_LAG):
    """Tensors (no copies where possible) of the inputs after checking shapes, values and the neighbour rows."""
    if kind not in DIMS:
        raise ValueError(f"kind must be one of {sorted(DIMS)}; got {kind!r}")
    d = DIMS[kind]
    pred, gt_listener = _tensor(pred, "pred"), _tensor(gt_listener, "gt_listener")
    gt_speaker, neighbours = _tensor(gt_speaker, "gt_speaker"), _tensor(neighbours, "neighbours")
    _check_shape(pred, f"pred (N, K, T, {d}) for kind={kind!r}", (None, None, None, d))
    n, k, t, _ = pred.shape
    if n == 0 or k == 0 or t == 0:
        raise ValueError(f"pred must hold at least one clip, sample and frame; got shape {tuple(pred.shape)}")
    _check_shape(gt_listener, f"gt_listener (M, T={t}, {d})", (None, t, d))
    m = gt_listener.shape[0]
    _check_shape(gt_speaker, f"gt_speaker (N={n}, T={t}, {d})", (n, t, d))
    _check_shape(neighbours, f"neighbours (N={n}, M={m})", (n, m))
    for arr, name in ((pred, "pred"), (gt_listener, "gt_listener"), (gt_speaker, "gt_speaker"),
                      (neighbours, "neighbours")):
        _check_finite(arr, name)
    if not bool(((neighbours == 0) | (neighbours == 1)).all()):
        raise ValueError("neighbours must be binary (0/1 or bool)")
    empty = torch.nonzero(~(neighbours != 0).any(dim=1)).flatten().tolist()
    if empty:
        raise ValueError(f"neighbours has {len(empty)} row(s) without an appropriate reaction: rows {empty[:20]}"
                         f"{' ...' if len(empty) > 20 else ''}")
    if t < max_lag + 2:
        raise ValueError(f"FRSyn needs T >= {max_lag + 2} frames for lags -{max_lag}..{max_lag} (at least 2 "
                         f"overlapping frames); got T={t}")
    return pred, gt_listener, gt_speaker, neighbours != 0


def _k_scale(convention: str, k: int) -> float:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
    return 1.0 if convention == "react2024" else 1.0 / k


def ccc(x, y, eps: float = CCC_EPS) -> torch.Tensor:
    """Concordance correlation coefficient over time (dim -2), per feature, averaged over features (dim -1).

    2 cov(x, y) / (var x + var y + (mean x - mean y)^2 + eps), population moments; x and y broadcast.
    """
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    mx, my = x.mean(-2, keepdim=True), y.mean(-2, keepdim=True)
    xc, yc = x - mx, y - my
    cov = (xc * yc).mean(-2)
    den = (xc * xc).mean(-2) + (yc * yc).mean(-2) + (mx - my).squeeze(-2) ** 2 + eps
    return (2 * cov / den).mean(-1)


def fr_corr(pred, gt_listener, neighbours, *, convention: str = "react2024", device=None) -> float:
    pred = _tensor(pred, "pred")
    n, k, t, d = pred.shape
    scale, device = _k_scale(convention, k), device or default_device()
    nb = torch.as_tensor(neighbours).bool()
    gt = _f64(_tensor(gt_listener, "gt_listener"), device)
    gm = gt.mean(1, keepdim=True)
    gc, gv = gt - gm, gt.var(1, unbiased=False)
    per_clip = torch.empty(n, dtype=torch.float64, device=device)
    for c in range(n):
        js = torch.nonzero(nb[c]).flatten().to(device)
        x = _f64(pred[c], device)  # (K, T, D)
        xm = x.mean(1, keepdim=True)
        cov = torch.einsum("ktd,jtd->kjd", x - xm, gc[js]) / t  # (K, J, D)
        den = x.var(1, unbiased=False)[:, None] + gv[js][None] + (xm - gm[js].transpose(0, 1)) ** 2 + CCC_EPS
        per_clip[c] = (2 * cov / den).mean(-1).amax(1).sum()  # best appropriate reaction per sample
    return float(per_clip.mean()) * scale


def pair_index(neighbours, k: int):
    """(ia, ib): sample index c*K + i and gt column j of every DTW/CCC pair, ordered (c, j, i), i fastest."""
    nb = torch.as_tensor(neighbours).bool()
    rows, cols = torch.nonzero(nb, as_tuple=True)
    ia = (rows[:, None] * k + torch.arange(k)[None]).flatten()
    ib = cols[:, None].expand(-1, k).flatten()
    return ia, ib


def fr_dist(pred, gt_listener, neighbours, *, kind: str = "3dmm", convention: str = "react2024", device=None,
            max_pairs_per_chunk: int | None = None, memory_budget: int | None = None) -> float:
    pred = _tensor(pred, "pred")
    n, k, t, d = pred.shape
    scale = _k_scale(convention, k)
    if kind not in DIMS or (kind == "emotion" and d != DIMS["emotion"]):
        raise ValueError(f"fr_dist: kind must be '3dmm' or 'emotion' (25 dims); got {kind!r} with {d} dims")
    a, b = pred.reshape(n * k, t, d), _tensor(gt_listener, "gt_listener")
    ia, ib = pair_index(neighbours, k)
    kw = dict(device=device, max_pairs_per_chunk=max_pairs_per_chunk, memory_budget=memory_budget)
    if kind == "emotion":  # one DTW batch: the three slices zero-padded to 15 dims (padding adds no cost)
        width = max(e - s for s, e, _ in EMOTION_SLICES)
        a3, b3 = a.new_zeros(3, *a.shape[:2], width), b.new_zeros(3, *b.shape[:2], width)
        for i, (s, e, _) in enumerate(EMOTION_SLICES):
            a3[i, ..., :e - s], b3[i, ..., :e - s] = a[..., s:e], b[..., s:e]
        off = torch.arange(3)[:, None]
        vals = dtw_indexed(a3.flatten(0, 1), b3.flatten(0, 1), (ia[None] + off * a.shape[0]).flatten(),
                           (ib[None] + off * b.shape[0]).flatten(), **kw).reshape(3, -1)
        dist = sum(w * vals[i] for i, (_, _, w) in enumerate(EMOTION_SLICES))
    else:
        dist = dtw_indexed(a, b, ia, ib, **kw)
    best = torch.full((n * k,), math.inf, dtype=torch.float64).scatter_reduce(0, ia, dist, reduce="amin")
    return float(best.reshape(n, k).sum(1).mean()) * scale


def _pair_sq_sum(x: torch.Tensor) -> torch.Tensor:
    """sum over ordered pairs (a, b) along dim 1 of ||x_a - x_b||^2 = 2 S sum_a ||x_a - mean||^2; x (B, S, F)."""
    xc = x - x.mean(1, keepdim=True)
    return 2 * x.shape[1] * (xc * xc).sum((1, 2))


def fr_div(pred, device=None) -> float:
    pred = _tensor(pred, "pred")
    n, k, t, d = pred.shape
    if k < 2:
        return math.nan
    device, total = device or default_device(), 0.0
    for sl in _chunks(n, k * t * d * 8 * 3):
        x = _f64(pred[sl], device).reshape(-1, k, t * d)
        total += float((_pair_sq_sum(x) / (k * (k - 1) * t * d)).sum())
    return total / n


def fr_dvs(pred, device=None) -> float:
    pred = _tensor(pred, "pred")
    n, k, t, d = pred.shape
    if n < 2:
        return math.nan
    device, total = device or default_device(), 0.0
    for i in range(k):  # two passes over the clips: mean, then squared deviations (no cancellation)
        mean = torch.zeros(t * d, dtype=torch.float64, device=device)
        for sl in _chunks(n, t * d * 8 * 2):
            mean += _f64(pred[sl, i], device).reshape(-1, t * d).sum(0)
        mean /= n
        sq = 0.0
        for sl in _chunks(n, t * d * 8 * 2):
            sq += float(((_f64(pred[sl, i], device).reshape(-1, t * d) - mean) ** 2).sum())
        total += 2 * n * sq / (n * (n - 1) * t * d)
    return total / k


def fr_var(pred, device=None) -> float:
    pred = _tensor(pred, "pred")
    n, k, t, d = pred.shape
    device, total = device or default_device(), 0.0
    for sl in _chunks(n, k * t * d * 8 * 2):
        total += float(_f64(pred[sl], device).var(dim=2).sum())
    return total / (n * k * d)


def tlcc_offsets(pred, speaker, *, max_lag: int = MAX_LAG, device=None) -> torch.Tensor:
    """|lag| (frames) of the best mean-over-dims Pearson correlation between each reaction and its speaker.

    Lag L pairs pred[t + L] with speaker[t] over the overlapping frames (the REACT code's `shift`). Sums over each
    overlap come from prefix sums, cross sums from one FFT cross-correlation per sequence. (N, K) float64, CPU.
    """
    pred, speaker = _tensor(pred, "pred"), _tensor(speaker, "speaker")
    n, k, t, d = pred.shape
    device = device or default_device()
    lags = torch.arange(-max_lag, max_lag + 1, device=device)
    nf = t + max_lag  # zero padding that keeps the circular correlation exact for |L| <= max_lag
    cnt = (t - lags.abs()).to(torch.float64)[:, None]  # (L, 1)
    hi_x, lo_x = t + lags.clamp(max=0), lags.clamp(min=0)  # pred window [lo_x, hi_x)
    hi_y, lo_y = t - lags.clamp(min=0), (-lags).clamp(min=0)  # speaker window [lo_y, hi_y)
    out = torch.empty(n, k, dtype=torch.float64)

    def windows(z):  # z (..., T, D) -> sums and squared sums over both windows, and a "constant" threshold
        zc = z - z.mean(-2, keepdim=True)
        p1 = torch.nn.functional.pad(zc.cumsum(-2), (0, 0, 1, 0))
        p2 = torch.nn.functional.pad((zc * zc).cumsum(-2), (0, 0, 1, 0))
        tiny = (1e-10 * z.abs().amax(-2, keepdim=True)) ** 2
        return zc, p1, p2, tiny

    for sl in _chunks(n, (k + 1) * (nf + 2 * t + 4 * len(lags)) * d * 8 * 3):
        xc, px, pxx, tx = windows(_f64(pred[sl], device))  # (c, K, ., D)
        yc, py, pyy, ty = windows(_f64(speaker[sl], device)[:, None])  # (c, 1, ., D)
        fx, fy = torch.fft.rfft(xc, n=nf, dim=-2), torch.fft.rfft(yc, n=nf, dim=-2)
        sxy = torch.fft.irfft(fx * fy.conj(), n=nf, dim=-2)[..., lags % nf, :]  # sum_t x[t+L] y[t]
        sx, sxx = px[..., hi_x, :] - px[..., lo_x, :], pxx[..., hi_x, :] - pxx[..., lo_x, :]
        sy, syy = py[..., hi_y, :] - py[..., lo_y, :], pyy[..., hi_y, :] - pyy[..., lo_y, :]
        vx, vy = sxx - sx * sx / cnt, syy - sy * sy / cnt
        cov = sxy - sx * sy / cnt
        defined = (vx > tx * cnt) & (vy > ty * cnt)
        r = torch.where(defined, cov / (vx * vy).clamp(min=1e-300).sqrt(), 0.0)
        nd = defined.sum(-1)
        score = torch.where(nd > 0, r.sum(-1) / nd.clamp(min=1), -math.inf)  # mean over defined dims, (c, K, L)
        off = (score.argmax(-1) - max_lag).abs().to(torch.float64)
        out[sl] = torch.where((nd > 0).any(-1), off, math.nan).cpu()
    return out


def fr_syn(pred, gt_speaker, *, max_lag: int = MAX_LAG, reference_quirks: bool = False, device=None) -> float:
    pred = _tensor(pred, "pred")
    offsets = tlcc_offsets(pred[:, :1] if reference_quirks else pred, gt_speaker, max_lag=max_lag, device=device)
    return float(offsets.mean())


def compute_all(pred, gt_listener, gt_speaker, neighbours, *, kind: str = "3dmm", convention: str = "react2024",
                reference_quirks: bool = False, device=None, max_lag: int = MAX_LAG,
                max_pairs_per_chunk: int | None = None) -> dict:
    """Every metric but FRRea (see fid.py) and the settings used, as a JSON-serialisable dict."""
    t0 = time.perf_counter()
    _k_scale(convention, 1)
    pred, gt_listener, gt_speaker, nb = validate(pred, gt_listener, gt_speaker, neighbours, kind=kind,
                                                 max_lag=max_lag)
    device = torch.device(device) if device is not None else default_device()
    n, k, t, d = pred.shape
    res = {
        "FRCorr": fr_corr(pred, gt_listener, nb, convention=convention, device=device),
        "FRDist": fr_dist(pred, gt_listener, nb, kind=kind, convention=convention, device=device,
                          max_pairs_per_chunk=max_pairs_per_chunk),
        "FRDiv": fr_div(pred, device), "FRDvs": fr_dvs(pred, device), "FRVar": fr_var(pred, device),
        "FRSyn": fr_syn(pred, gt_speaker, max_lag=max_lag, reference_quirks=reference_quirks, device=device),
    }
    res.update(kind=kind, convention=convention, reference_quirks=reference_quirks,
               frsyn_samples="first" if reference_quirks else "all", frsyn_lags=[-max_lag, max_lag],
               frdist_emotion_slices=[list(s) for s in EMOTION_SLICES] if kind == "emotion" else None,
               clips=n, k=k, frames=t, dims=d, gt_columns=int(nb.shape[1]),
               neighbours_per_clip=float(nb.sum(1).double().mean()), dtw_pairs=int(nb.sum()) * k,
               device=str(device), seconds=round(time.perf_counter() - t0, 3))
    return res
