"""`reactdiff evaluate`: generated reactions + ground truth from the shards -> metrics.json, report.md and plots.

The model is scored next to honest baselines on the same ground truth (`mean`, `random` from another split, `mime`;
see baselines.py) and the ground-truth reference row, with the motion statistics of motion.py for every row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli_args import named_folders
from .evaluate import evaluate
from .report import markdown


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff evaluate", description=__doc__)
    p.add_argument("--reactions", "--samples", dest="samples", required=True, metavar="DIR",
                   help="output folder of `reactdiff sample` (--samples is its old name)")
    p.add_argument("--shards", required=True, help="the shard folder the reactions were generated for")
    p.add_argument("--out", help="where metrics.json and report.md go (default: --reactions)")
    p.add_argument("--convention", default="react2024", choices=("react2024", "reactface"),
                   help="FRCorr/FRDist summed (react2024) or averaged (reactface) over the K samples")
    p.add_argument("--protocol", choices=("react2024", "react2025", "react2026"),
                   help="react2024: fixed-length clips and the neighbour matrix; react2025 / react2026: MARS (whole "
                        "clips, session-level appropriate sets, the attribute metrics; 2026 scores speaker -> "
                        "listener only). Default: react2025 for MARS shards, else react2024")
    p.add_argument("--reference-quirks", action="store_true",
                   help="score FRSyn on the first sample only, as the reference code does")
    p.add_argument("--baseline-shards", help="the split the random and mean baselines draw real listeners from "
                                             "(default: the sibling `train` folder of --shards; never --shards)")
    p.add_argument("--no-baselines", action="store_true", help="skip the baselines and the ground-truth row")
    p.add_argument("--reference", action="append", metavar="NAME=DIR",
                   help="another reactions folder of the same clips, K and frames, scored as a `reference: NAME` row "
                        "(repeatable): e.g. `reactdiff oracle`'s listeners of a synthetic dataset, which show "
                        "what a perfect model of its listeners reaches, or another model's reactions")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--renders", help="videos of `reactdiff render --ground-truth` for these samples: adds FRRea")
    p.add_argument("--fid-weights", help="pytorch-fid's InceptionV3 weights (pt_inception-2015-12-05-6726825d.pth), "
                                         "for FRRea")
    p.add_argument("--frame-step", type=int, default=10, help="FRRea on every N-th frame (default 10)")
    p.add_argument("--wandb", default="offline", choices=("offline", "online", "disabled"),
                   help="log metrics, plots and report to wandb, grouped with the training run the export names "
                        "(default offline: a run folder under --out that `wandb sync` uploads)")
    return p


def _run(args) -> dict:
    from .mars_truth import resolve_protocol

    samples, shards, out = Path(args.samples), Path(args.shards), Path(args.out or args.samples)
    baseline_shards = Path(args.baseline_shards) if args.baseline_shards else None
    if args.renders and not args.fid_weights:
        raise ValueError("--renders needs --fid-weights (FRRea uses pytorch-fid's InceptionV3; nothing is downloaded)")
    protocol = resolve_protocol(shards, args.protocol)
    references = named_folders(args.reference, "--reference")
    if protocol != "react2024":
        if references:
            raise ValueError("--reference rows are not part of the MARS protocols' reports yet")
        from .mars_evaluate import evaluate_mars

        if args.renders:
            raise ValueError("--renders (FRRea) is not part of the MARS protocols here yet")
        return evaluate_mars(samples, shards, out, protocol, args.reference_quirks, not args.no_baselines,
                             args.device, baseline_shards, progress=True, wandb=args.wandb)
    return evaluate(samples, shards, out, args.convention, args.reference_quirks, not args.no_baselines, args.device,
                    Path(args.renders) if args.renders else None, args.fid_weights, args.frame_step,
                    baseline_shards=baseline_shards, progress=True, wandb=args.wandb, references=references)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = _run(args)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"reactdiff evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    print(f"reactdiff evaluate: {report['seconds']:.1f} s -> {Path(args.out or args.samples) / 'metrics.json'}")
    return 0
