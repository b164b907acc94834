"""`reactdiff evaluate`: generated reactions + ground truth from the shards -> metrics.json and report.md.

Baselines scored on the same ground truth make numbers readable: `mime` (the listener copies the speaker) and
`random` (K true listener reactions of other, randomly chosen clips).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .. import atomic
from ..sampling.writer import load_manifest, reaction_path
from .ground_truth import GroundTruth, load_ground_truth
from .metrics import compute_all

METRICS = ("FRCorr", "FRDist", "FRDiv", "FRDvs", "FRVar", "FRSyn")


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


def baselines(gt: GroundTruth, k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = gt.rows
    others = np.stack([rng.choice(np.delete(np.arange(n), i), size=k, replace=k > n - 1) for i in range(n)])
    return {"mime": np.repeat(gt.speaker_fv[:, None], k, axis=1), "random": gt.listener_fv[others]}


def evaluate(samples: Path, shards: Path, out: Path | None = None, convention: str = "react2024",
             reference_quirks: bool = False, with_baselines: bool = True, device: str | None = None,
             renders: Path | None = None, fid_weights: Path | None = None, frame_step: int = 10,
             extractor=None) -> dict:
    """The metrics of every row; FRRea too when `renders` (a `reactdiff render --ground-truth` folder) is given,
    with pytorch-fid's InceptionV3 from `fid_weights` (or an injected `extractor`)."""
    t0 = time.time()
    manifest = load_manifest(samples)  # merged once (fan-out tasks write parts)
    settings = manifest["settings"]
    gt = load_ground_truth(shards, frames=settings["frames"])
    face, emotion = load_reactions(samples, manifest, gt.rows)
    kw = dict(convention=convention, reference_quirks=reference_quirks, device=device)
    results = {"model": compute_all(face, gt.listener_fv, gt.speaker_fv, gt.neighbours, kind="3dmm", **kw)}
    if emotion is not None:
        results["model (emotion)"] = compute_all(emotion, gt.listener_emotion, gt.speaker_emotion, gt.neighbours,
                                                 kind="emotion", **kw)
    if with_baselines:
        for name, pred in baselines(gt, face.shape[1]).items():
            results[f"baseline: {name}"] = compute_all(pred, gt.listener_fv, gt.speaker_fv, gt.neighbours,
                                                       kind="3dmm", **kw)
    if renders is not None:
        from .frrea_renders import frrea_from_renders

        rea = frrea_from_renders(renders, extractor, weights=fid_weights, step=frame_step, device=device,
                                 sampling=settings)
        results["model"]["FRRea"] = rea.pop("FRRea")
        results["model"]["frrea"] = {**rea, "renders": str(renders)}
    report = {"samples": str(samples), "shards": str(shards), "sampling": settings, "rows": gt.rows,
              "k": int(face.shape[1]), "frames": int(face.shape[2]), "convention": convention,
              "reference_quirks": reference_quirks, "results": results, "seconds": round(time.time() - t0, 2)}
    if out is not None:
        atomic.write_json(out / "metrics.json", report)
        plot(report, out / "metrics.png")
        atomic.write_text(out / "report.md", markdown(report))
    return report


def plot(report: dict, path: Path) -> None:
    """One small bar chart per metric: the model next to the baselines."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["results"])
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.5))
    for ax, metric in zip(axes.flat, METRICS):
        values = [report["results"][n][metric] for n in names]
        ax.bar(range(len(names)), values, color=["C0"] + ["C7"] * (len(names) - 1))
        ax.set_xticks(range(len(names)), [n.replace("baseline: ", "") for n in names], rotation=20, fontsize=8)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def markdown(report: dict) -> str:
    lines = ["# REACT metrics", "",
             f"{report['rows']} speaker clips x {report['k']} reactions x {report['frames']} frames; convention "
             f"`{report['convention']}` (FRCorr/FRDist {'summed' if report['convention'] == 'react2024' else 'averaged'}"
             f" over the K samples); FRSyn over {'the first sample only (reference quirk)' if report['reference_quirks'] else 'all K samples'}.",
             f"Samples: `{report['samples']}` ({report['sampling'].get('weights')}, {report['sampling'].get('sampler')} "
             f"{report['sampling'].get('steps')} steps). Ground truth: `{report['shards']}`.", "",
             "| | " + " | ".join(METRICS) + " |", "| --- | " + " | ".join("---:" for _ in METRICS) + " |"]
    for name, res in report["results"].items():
        lines.append(f"| {name} | " + " | ".join(f"{res[m]:.4f}" for m in METRICS) + " |")
    rea = report["results"]["model"].get("frrea")
    if rea is not None:
        lines += ["", f"FRRea (Frechet distance of rendered listener frames, lower is better): "
                      f"**{report['results']['model']['FRRea']:.4f}**, {rea['generated_videos']} generated vs "
                      f"{rea['real_videos']} true listener videos (rows {rea['rows']}, K {rea['k']}, frames "
                      f"{rea['frames']}), every {rea['frame_step']}th frame, {rea['renderer']} (`{rea['renders']}`)."]
    lines += ["", "![metrics of the model and the baselines](metrics.png)", "", "FRCorr: higher is better (appropriateness). FRDist: lower is better. FRDiv/FRDvs/FRVar: diversity "
              "(higher = more diverse). FRSyn: lower is better (frames of lag to the speaker)."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff evaluate", description=__doc__)
    p.add_argument("--samples", required=True, help="output folder of `reactdiff sample`")
    p.add_argument("--shards", required=True, help="the shard folder the reactions were generated for")
    p.add_argument("--out", help="where metrics.json and report.md go (default: --samples)")
    p.add_argument("--convention", default="react2024", choices=("react2024", "reactface"),
                   help="FRCorr/FRDist summed (react2024) or averaged (reactface) over the K samples")
    p.add_argument("--reference-quirks", action="store_true",
                   help="score FRSyn on the first sample only, as the reference code does")
    p.add_argument("--no-baselines", action="store_true", help="skip the mime and random baselines")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--renders", help="videos of `reactdiff render --ground-truth` for these samples: adds FRRea")
    p.add_argument("--fid-weights", help="pytorch-fid's InceptionV3 weights (pt_inception-2015-12-05-6726825d.pth), "
                                         "for FRRea")
    p.add_argument("--frame-step", type=int, default=10, help="FRRea on every N-th frame (default 10)")
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
                          Path(args.renders) if args.renders else None, args.fid_weights, args.frame_step)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"reactdiff evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    print(f"reactdiff evaluate: {report['seconds']:.1f} s -> {Path(args.out or samples) / 'metrics.json'}")
    return 0
