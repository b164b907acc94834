"""Score reactions to MARS clips (REACT 2025 / 2026 protocols): whole clips, session-level appropriate sets, the
attribute metrics of mars_metrics.py, the honest baselines and the ground-truth reference, and the motion
statistics. The report has the shape of evaluate.py's, so report.py writes and shows both.

A model that predicts only 3DMM is scored on 3DMM with the same protocol; the report says that this is not the
leaderboard's score, which is on the 25 facial attributes.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..data import mars_layout as M
from ..sampling.writer import load_manifest, reaction_path
from .band_power import band_power
from .baselines import resolve_baseline_shards
from .mars_metrics import MARS_METRICS, score
from .mars_truth import align, load_mars_truth
from .motion import clip_couplings, clip_group_stats, seam_jitter
from .report import write_report

MARS_DESCRIPTIONS = {
    "baseline: mean": "the baseline split's mean frame (over both roles), held still for the whole clip",
    "baseline: random": "K real recordings drawn from the baseline split (never the evaluated one), stretched to "
                        "the clip's length",
    "baseline: mime": "the listener copies the speaker",
    "reference: ground truth": "K copies of the paired listener: the metrics' ceiling/floor, not a baseline",
}


def _reactions(samples: Path, rows: list, emotion: bool) -> dict[int, np.ndarray]:
    missing = [r.row for r in rows if not reaction_path(samples, r.row, emotion=emotion).is_file()]
    if missing:
        what = "emotion reactions" if emotion else "reactions"
        raise ValueError(f"{samples} lacks {what} for {len(missing)} of {len(rows)} rows (e.g. {missing[:8]}); "
                         f"finish sampling first (rerun `reactdiff sample` with the same --out)")
    return {r.row: np.load(reaction_path(samples, r.row, emotion=emotion), allow_pickle=False) for r in rows}


def _pool(baseline_shards: Path) -> dict[str, list[np.ndarray]]:
    """Every recording of the baseline split (both roles), per kind."""
    from .mars_truth import KINDS, read_clips
    from ..data.shard_index import ShardIndex

    clips = read_clips(ShardIndex.open(baseline_shards))
    return {kind: [c[f"{p}.{member}"] for c in clips.values() for p in ("a", "b")] for kind, member in KINDS.items()}


def mars_baselines(rows: list, k: int, pool: dict | None, kind: str, seed: int = 0) -> dict[str, dict]:
    """name -> {row: (K, T, D)} for the baselines and the reference, in the order of MARS_DESCRIPTIONS."""
    out = {}
    if pool is not None:
        frames = np.concatenate(pool[kind])
        mean = frames.mean(0, dtype=np.float64).astype(np.float32)
        out["baseline: mean"] = {r.row: np.broadcast_to(mean, (k, r.frames, mean.shape[0])).copy() for r in rows}
        rng = np.random.default_rng(seed)
        draws = {r.row: rng.choice(len(pool[kind]), size=k, replace=k > len(pool[kind])) for r in rows}
        out["baseline: random"] = {r.row: np.stack([align(pool[kind][i], r.frames) for i in draws[r.row]])
                                   for r in rows}
    out["baseline: mime"] = {r.row: np.repeat(r.speaker[kind][None], k, axis=0) for r in rows}
    out["reference: ground truth"] = {r.row: np.repeat(r.targets[kind][0][None], k, axis=0) for r in rows}
    return out


def evaluate_mars(samples: Path, shards: Path, out: Path | None = None, protocol: str = "react2025",
                  reference_quirks: bool = False, with_baselines: bool = True, device: str | None = None,
                  baseline_shards: Path | None = None, progress: bool = False, wandb: str = "disabled") -> dict:
    t0 = time.time()
    settings = load_manifest(samples)["settings"]
    if settings.get("frames", 0) != 0:
        raise ValueError(f"{samples} was sampled with data.eval_frames={settings['frames']}: the MARS protocols score "
                         f"whole clips; sample again with data.eval_frames=0")
    rows = load_mars_truth(shards, protocol)
    emotion = all(reaction_path(samples, r.row, emotion=True).is_file() for r in rows)
    kind = "attributes" if emotion else "3dmm"
    preds = _reactions(samples, rows, emotion)
    faces = preds if not emotion else _reactions(samples, rows, False)
    k = int(next(iter(preds.values())).shape[0])
    pool_dir = resolve_baseline_shards(shards, baseline_shards) if with_baselines else None
    pool = _pool(pool_dir) if pool_dir is not None else None
    fps = float(settings.get("fps", M.FPS))
    base = mars_baselines(rows, k, pool, kind) if with_baselines else {}
    base_face = base if kind == "3dmm" or not base else mars_baselines(rows, k, pool, "3dmm")  # same draws
    table = {"model": (preds, faces), **{name: (base[name], base_face[name]) for name in base}}
    results = {}
    for name, (pred, face) in table.items():
        results[name] = score(pred, rows, kind=kind, fps=fps, reference_quirks=reference_quirks, device=device,
                              progress=progress)
        results[name]["motion"] = clip_group_stats([face[r.row] for r in rows],
                                                   [r.targets["3dmm"][0] for r in rows], fps)
        results[name]["bands"] = band_power([face[r.row] for r in rows], [r.targets["3dmm"][0] for r in rows], fps)
    seams = seam_jitter([faces[r.row] for r in rows], [r.targets["3dmm"][0] for r in rows], settings["window"],
                        settings["overlap"]) if "window" in settings else None  # (the oracle's: no windows)
    if seams is not None:
        results["model"]["seams"] = seams
    missing = sum(r.missing for r in rows)
    pairs = clip_couplings([r.speaker["3dmm"] for r in rows], [r.targets["3dmm"][0] for r in rows],
                           [faces[r.row] for r in rows], fps)
    report = {"samples": str(samples), "shards": str(shards), "sampling": settings, "rows": len(rows), "k": k,
              "frames": results["model"]["frames"], "fps": fps, "protocol": protocol, "kind": kind,
              "convention": protocol, "reference_quirks": reference_quirks,
              "metric_names": [m for m in MARS_METRICS if m in results["model"]],  # no MAE on 3DMM
              "baseline_shards": str(pool_dir) if pool_dir else None, "descriptions": MARS_DESCRIPTIONS,
              "appropriate_missing": missing, "results": results, "seconds": round(time.time() - t0, 2)}
    if pairs is not None:  # clips shorter than the lags (2 s each way) are left out of the curves, and counted
        report["couplings"] = pairs
    if out is not None:
        write_report(report, out, wandb)
    return report
