"""`reactdiff export`: a checkpoint's EMA weights -> an inference export (model.safetensors + config.yaml)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors.torch import load_file

from .. import config
from ..model.export import export_weights
from . import checkpoint


def export_checkpoint(run_dir: Path, step: int | None = None, out: Path | None = None) -> Path:
    folder = run_dir / "checkpoints"
    tags = checkpoint.complete_tags(folder)
    if not tags:
        raise FileNotFoundError(f"no complete checkpoint in {folder}")
    tag = checkpoint.tag_for(step) if step is not None else tags[-1]
    if tag not in tags:
        raise FileNotFoundError(f"{folder / tag} is not a complete checkpoint; complete ones: {', '.join(tags)}")
    ema_file = folder / tag / checkpoint.EMA_FILE
    if not ema_file.is_file():
        raise FileNotFoundError(f"{ema_file} not found")
    cfg = config.load(run_dir / "config.yaml", saved=True)
    return export_weights(cfg, load_file(str(ema_file)), out or run_dir / "export", kind=f"ema@{tag}",
                          source=str(ema_file))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff export", description=__doc__)
    p.add_argument("--run", required=True, help="run folder (<train.out>/<name>)")
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest complete one)")
    p.add_argument("--out", help="export folder (default: <run>/export)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = export_checkpoint(Path(args.run), args.step, Path(args.out) if args.out else None)
    except (FileNotFoundError, ValueError, config.ConfigError) as exc:
        print(f"reactdiff export: error: {exc}", file=sys.stderr)
        return 2
    print(f"reactdiff export: EMA weights of {args.run} -> {out}")
    return 0
