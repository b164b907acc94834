"""Score generated reactions: the model next to honest baselines on the same ground truth (`mean`, `random` from
another split, `mime`; see baselines.py) and the ground-truth reference row, with the motion statistics of
motion.py for every row; other reaction folders for the same clips (`references`: the synthetic generator's own
listeners, another model) are scored alongside as `reference: <name>` rows. The report it returns is what report.py
writes and shows; `reactdiff evaluate` (eval/cli.py) is its command line.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.frame_layout import FPS
from ..sampling.writer import load_manifest, reaction_path
from .band_power import band_power
from .baselines import DESCRIPTIONS, baselines, listener_pool, resolve_baseline_shards
from .ground_truth import load_ground_truth
from .metrics import METRICS, compute_all
from .motion import couplings, group_stats, seam_jitter
from .report import write_report

__all__ = ["METRICS", "evaluate", "load_reactions", "load_references"]


def load_reactions(samples: Path, manifest: dict, rows: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, K, T, 58) and, when the model predicts it, (N, K, T, 25), in neighbour-matrix row order."""
    have = {e["row"] for e in manifest["entries"] if reaction_path(samples, e["row"]).is_file()}
    missing = sorted(set(range(rows)) - have)
    if missing:
        raise ValueError(f"{samples} lacks reactions for {len(missing)} of {rows} rows (e.g. {missing[:8]}); "
                         f"finish sampling first (rerun `reactdiff sample` with the same --out)")
    face = np.stack([np.load(reaction_path(samples, r)) for r in range(rows)])
    emotion = None
    if all(reaction_path(samples, r, emotion=True).is_file() for r in range(rows)):
        emotion = np.stack([np.load(reaction_path(samples, r, emotion=True)) for r in range(rows)])
    return face, emotion


def load_references(references: dict[str, Path] | None, rows: int, k: int, frames: int) -> tuple[dict, dict]:
    """(`reference: <name>` -> (N, K, T, 58), -> what each is) for other reaction folders of the same clips, with
    the model's K and frames (FRCorr / FRDist sum over K: other K would not compare)."""
    faces, descriptions = {}, {}
    for name, folder in (references or {}).items():
        folder = Path(folder)
        row = f"reference: {name}"
        if row in DESCRIPTIONS:
            raise ValueError(f"reference name {name!r} is taken by a built-in row; choose another")
        manifest = load_manifest(folder)
        face, _ = load_reactions(folder, manifest, rows)
        if face.shape[1:3] != (k, frames):
            raise ValueError(f"{folder}: {face.shape[1]} reactions x {face.shape[2]} frames per clip, the model's "
                             f"{k} x {frames}; a reference row is scored on the same clips, K and frames")
        faces[row] = face
        weights = manifest["settings"].get("weights", "weights not recorded")
        descriptions[row] = f"reactions from `{folder}` ({weights})"
    return faces, descriptions


def evaluate(samples: Path, shards: Path, out: Path | None = None, convention: str = "react2024",
             reference_quirks: bool = False, with_baselines: bool = True, device: str | None = None,
             renders: Path | None = None, fid_weights: Path | None = None, frame_step: int = 10,
             extractor=None, baseline_shards: Path | None = None, progress: bool = False,
             wandb: str = "disabled", references: dict[str, Path] | None = None) -> dict:
    """The metrics and motion statistics of every row, next to the baselines (drawn from `baseline_shards`,
    default the sibling `train` folder) and the ground-truth reference; FRRea too when `renders` (a `reactdiff
    render --ground-truth` folder) is given, with pytorch-fid's InceptionV3 from `fid_weights` (or an injected
    `extractor`). wandb: offline / online logs the report to wandb, grouped with the training run
    (wandb_log.py). references: name -> reactions folder of the same clips, scored as `reference: <name>`."""
    t0 = time.time()
    manifest = load_manifest(samples)  # merged once (fan-out tasks write parts)
    settings = manifest["settings"]
    gt = load_ground_truth(shards, frames=settings["frames"])
    face, emotion = load_reactions(samples, manifest, gt.rows)
    pool_dir = resolve_baseline_shards(shards, baseline_shards) if with_baselines else None
    fps = float(settings.get("fps", FPS))
    kw = dict(convention=convention, reference_quirks=reference_quirks, device=device)
    rows = {"model": face}
    if with_baselines:
        rows.update(baselines(gt, face.shape[1], listener_pool(pool_dir, settings["frames"])))
    extra, described = load_references(references, gt.rows, face.shape[1], face.shape[2])
    rows.update(extra)
    results = {}
    for name, pred in tqdm(rows.items(), desc="evaluate", unit="row", disable=not progress, dynamic_ncols=True):
        results[name] = compute_all(pred, gt.listener_fv, gt.speaker_fv, gt.neighbours, kind="3dmm", **kw)
        results[name]["motion"] = group_stats(pred, gt.listener_fv, fps)
        results[name]["bands"] = band_power(list(pred), list(gt.listener_fv), fps)
        if name == "model" and emotion is not None:
            results["model (emotion)"] = compute_all(emotion, gt.listener_emotion, gt.speaker_emotion,
                                                     gt.neighbours, kind="emotion", **kw)
    seams = seam_jitter(list(face), list(gt.listener_fv), settings["window"], settings["overlap"]) \
        if "window" in settings else None  # (reactions made without windows, e.g. the synthetic oracle's: none)
    if seams is not None:
        results["model"]["seams"] = seams
    if renders is not None:
        from .frrea_renders import frrea_from_renders

        rea = frrea_from_renders(renders, extractor, weights=fid_weights, step=frame_step, device=device,
                                 sampling=settings)
        results["model"]["FRRea"] = rea.pop("FRRea")
        results["model"]["frrea"] = {**rea, "renders": str(renders)}
    report = {"samples": str(samples), "shards": str(shards), "sampling": settings, "rows": gt.rows,
              "k": int(face.shape[1]), "frames": int(face.shape[2]), "fps": fps, "convention": convention,
              "reference_quirks": reference_quirks, "baseline_shards": str(pool_dir) if pool_dir else None,
              "results": results, "descriptions": {**DESCRIPTIONS, **described},
              "couplings": couplings(gt.speaker_fv, gt.listener_fv, face, fps),
              "seconds": round(time.time() - t0, 2)}
    if out is not None:
        write_report(report, out, wandb)
    return report
