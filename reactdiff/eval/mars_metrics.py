"""The REACT 2025 / 2026 metrics (MARS): every clip at its own length, its appropriate reactions aligned to it.

Per clip c of T_c frames with K reactions and J aligned appropriate reactions (mars_truth.align), then the mean
over clips, as the challenge's evaluation defines them:
- FRC: sum over the K reactions of the best CCC against the J targets (metrics.fr_corr on one clip);
- FRD: sum over K of the smallest DTW (on the attributes: the AU, valence/arousal and expression slices weighted
  1/15, 1, 1/8, as for REACT 2024's emotion; on 3DMM the plain DTW);
- TLCC (our FRSyn): |lag| of the best mean-over-dims Pearson correlation between a reaction and its speaker, lags
  within 2 s at the data's fps (59 at 30 fps; the challenge's code passes 25 fps, 49 lags), capped at T_c - 2 for
  clips shorter than that; mean over all K reactions, or (reference_quirks) the first only, as its code does;
- S-MSE: our FRDiv on the clip (squared differences between its K reactions / (K (K-1) T D));
- FRVar: variance over time, mean over reactions and dims;
- MAE (attributes only): mean over reactions i and targets j of mean |target_j - reaction_i| over the 10 columns
  after the AUs (valence, arousal, expressions).
FRDvs compares reactions across clips and is not defined for clips of different lengths (nor in the challenge).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from .dtw import default_device
from .mars_truth import MarsRow, align
from .metrics import fr_corr, fr_dist, fr_div, fr_var, tlcc_offsets

MARS_METRICS = ("FRC", "FRD", "TLCC", "S-MSE", "FRVar", "MAE")
AFTER_AUS = 15  # the MAE columns: valence, arousal, 8 expression probabilities


def max_lag(fps: float, seconds: float = 2.0) -> int:
    return int(round(seconds * fps)) - 1


def clip_metrics(pred: np.ndarray, speaker: np.ndarray, targets: list[np.ndarray], *, kind: str, fps: float,
                 reference_quirks: bool = False, device=None) -> dict:
    """One clip: pred (K, T, D), speaker (T, D), targets [(T_j, D)] -> each metric's value for this clip."""
    k, t, d = pred.shape
    if speaker.shape != (t, d):
        raise ValueError(f"speaker must have shape ({t}, {d}) like the reactions; got {speaker.shape}")
    if not targets:
        raise ValueError("a clip needs at least one appropriate reaction")
    gt = np.stack([align(x, t) for x in targets])  # (J, T, D)
    p = torch.from_numpy(np.ascontiguousarray(pred, np.float64))[None]
    ones = torch.ones(1, len(gt), dtype=torch.bool)
    dist_kind = "emotion" if kind == "attributes" else "3dmm"
    lag = max(0, min(max_lag(fps), t - 2))
    offsets = tlcc_offsets(p[:, :1] if reference_quirks else p, torch.from_numpy(speaker)[None], max_lag=lag,
                           device=device)
    out = {"FRC": fr_corr(p, gt, ones, device=device), "FRD": fr_dist(p, gt, ones, kind=dist_kind, device=device),
           "TLCC": float(offsets.mean()), "S-MSE": fr_div(p, device), "FRVar": fr_var(p, device) if t > 1 else 0.0}
    if kind == "attributes":
        diff = np.abs(gt[None, :, :, AFTER_AUS:].astype(np.float64) - pred[:, None, :, AFTER_AUS:])
        out["MAE"] = float(diff.mean())
    return out


def score(preds: dict[int, np.ndarray], rows: list[MarsRow], *, kind: str, fps: float,
          reference_quirks: bool = False, device=None, progress: bool = False) -> dict:
    """Mean over the rows of clip_metrics; preds: row -> (K, T, D) at that row's length."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    device = torch.device(device) if device is not None else default_device()
    per_clip = []
    for r in tqdm(rows, desc=f"metrics ({kind})", unit="clip", disable=not progress, dynamic_ncols=True):
        pred = preds[r.row]
        if pred.shape[1] != r.frames:
            raise ValueError(f"row {r.row} ({r.key}, {r.direction}): the reactions have {pred.shape[1]} frames, "
                             f"the clip {r.frames}; MARS reactions cover the whole clip (data.eval_frames=0)")
        per_clip.append(clip_metrics(pred, r.speaker[kind], r.targets[kind], kind=kind, fps=fps,
                                     reference_quirks=reference_quirks, device=device))
    names = [m for m in MARS_METRICS if m in per_clip[0]]
    res = {m: float(np.mean([c[m] for c in per_clip])) for m in names}
    frames = [r.frames for r in rows]
    res.update(kind=kind, clips=len(rows), k=int(next(iter(preds.values())).shape[0]),
               frames={"total": int(sum(frames)), "min": int(min(frames)), "max": int(max(frames))},
               targets_per_clip=float(np.mean([len(r.targets[kind]) for r in rows])),
               tlcc_lags=max_lag(fps), tlcc_samples="first" if reference_quirks else "all",
               alignment="nearest-frame time stretch of each target to the clip's length",
               FRDvs=math.nan, device=str(device), seconds=round(time.perf_counter() - t0, 3))
    return res
