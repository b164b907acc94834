"""`reactdiff evaluate`: generated reactions + ground truth from the shards -> metrics.json, report.md and plots.

The model is scored next to honest baselines on the same ground truth (`mean`, `random` from another split, `mime`;
see baselines.py) and the ground-truth reference row, with the motion statistics of motion.py for every row.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import atomic
from ..data.faceverse import FPS
from ..sampling.writer import load_manifest, reaction_path
from .baselines import baselines, listener_pool, resolve_baseline_shards
from .ground_truth import load_ground_truth
from .metrics import compute_all
from .motion import couplings, group_stats, plot_couplings
from .report import METRICS, markdown, plot_metrics
from .wandb_log import log_evaluation

__all__ = ["METRICS", "evaluate", "load_reactions", "main"]


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


def evaluate(samples: Path, shards: Path, out: Path | None = None, convention: str = "react2024",
             reference_quirks: bool = False, with_baselines: bool = True, device: str | None = None,
             renders: Path | None = None, fid_weights: Path | None = None, frame_step: int = 10,
             extractor=None, baseline_shards: Path | None = None, progress: bool = False,
             wandb: str = "disabled") -> dict:
    """The metrics and motion statistics of every row, next to the baselines (drawn from `baseline_shards`,
    default the sibling `train` folder) and the ground-truth reference; FRRea too when `renders` (a `reactdiff
    render --ground-truth` folder) is given, with pytorch-fid's InceptionV3 from `fid_weights` (or an injected
    `extractor`). wandb: offline / online logs the report to wandb, grouped with the training run
    (wandb_log.py)."""
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
    results = {}
    for name, pred in tqdm(rows.items(), desc="evaluate", unit="row", disable=not progress, dynamic_ncols=True):
        results[name] = compute_all(pred, gt.listener_fv, gt.speaker_fv, gt.neighbours, kind="3dmm", **kw)
        results[name]["motion"] = group_stats(pred, gt.listener_fv, fps)
        if name == "model" and emotion is not None:
            results["model (emotion)"] = compute_all(emotion, gt.listener_emotion, gt.speaker_emotion,
                                                     gt.neighbours, kind="emotion", **kw)
    if renders is not None:
        from .frrea_renders import frrea_from_renders

        rea = frrea_from_renders(renders, extractor, weights=fid_weights, step=frame_step, device=device,
                                 sampling=settings)
        results["model"]["FRRea"] = rea.pop("FRRea")
        results["model"]["frrea"] = {**rea, "renders": str(renders)}
    report = {"samples": str(samples), "shards": str(shards), "sampling": settings, "rows": gt.rows,
              "k": int(face.shape[1]), "frames": int(face.shape[2]), "fps": fps, "convention": convention,
              "reference_quirks": reference_quirks, "baseline_shards": str(pool_dir) if pool_dir else None,
              "results": results, "couplings": couplings(gt.speaker_fv, gt.listener_fv, face, fps),
              "seconds": round(time.time() - t0, 2)}
    if out is not None:
        atomic.write_json(out / "metrics.json", report)
        plot_metrics(report, out / "metrics.png")
        plot_couplings(report["couplings"], out / "couplings.png")
        atomic.write_text(out / "report.md", markdown(report))
        try:
            report["wandb"] = log_evaluation(report, out, wandb)
        except Exception as exc:  # noqa: BLE001 - the metrics are written; wandb is a copy of them
            print(f"reactdiff evaluate: warning: wandb logging failed ({type(exc).__name__}: {exc}); "
                  f"{out / 'metrics.json'} and report.md are written", file=sys.stderr)
            report["wandb"] = None
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff evaluate", description=__doc__)
    p.add_argument("--samples", required=True, help="output folder of `reactdiff sample`")
    p.add_argument("--shards", required=True, help="the shard folder the reactions were generated for")
    p.add_argument("--out", help="where metrics.json and report.md go (default: --samples)")
    p.add_argument("--convention", default="react2024", choices=("react2024", "reactface"),
                   help="FRCorr/FRDist summed (react2024) or averaged (reactface) over the K samples")
    p.add_argument("--reference-quirks", action="store_true",
                   help="score FRSyn on the first sample only, as the reference code does")
    p.add_argument("--baseline-shards", help="the split the random and mean baselines draw real listeners from "
                                             "(default: the sibling `train` folder of --shards; never --shards)")
    p.add_argument("--no-baselines", action="store_true", help="skip the baselines and the ground-truth row")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--renders", help="videos of `reactdiff render --ground-truth` for these samples: adds FRRea")
    p.add_argument("--fid-weights", help="pytorch-fid's InceptionV3 weights (pt_inception-2015-12-05-6726825d.pth), "
                                         "for FRRea")
    p.add_argument("--frame-step", type=int, default=10, help="FRRea on every N-th frame (default 10)")
    p.add_argument("--wandb", default="offline", choices=("offline", "online", "disabled"),
                   help="log metrics, plots and report to wandb, grouped with the training run the export names "
                        "(default offline: a run folder under --out that `wandb sync` uploads)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    samples = Path(args.samples)
    try:
        if args.renders and not args.fid_weights:
            raise ValueError("--renders needs --fid-weights (FRRea uses pytorch-fid's InceptionV3; nothing is "
                             "downloaded)")
        report = evaluate(samples, Path(args.shards), Path(args.out) if args.out else samples, args.convention,
                          args.reference_quirks, not args.no_baselines, args.device,
                          Path(args.renders) if args.renders else None, args.fid_weights, args.frame_step,
                          baseline_shards=Path(args.baseline_shards) if args.baseline_shards else None,
                          progress=True, wandb=args.wandb)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"reactdiff evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    print(f"reactdiff evaluate: {report['seconds']:.1f} s -> {Path(args.out or samples) / 'metrics.json'}")
    return 0
