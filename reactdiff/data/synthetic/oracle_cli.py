"""`reactdiff oracle`: a synthetic dataset's own generator as a reaction model. For every speaker clip of a split, K
fresh listeners drawn from the generator (a new person, or the recorded listener's own person), written as a
reactions folder that `reactdiff evaluate --reference NAME=DIR` scores next to a model: what a perfect model of these
listeners reaches, and so which targets are out of reach on this data (e.g. FRDist below the still mean face)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .oracle import write_oracle_reactions


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff oracle", description=__doc__)
    p.add_argument("--root", required=True, help="the synthetic dataset (`reactdiff synth --out`; its synthetic.json)")
    p.add_argument("--split", default="test", help="split whose speakers get listeners (default test)")
    p.add_argument("--out", required=True, help="reactions folder to write (reactions/, manifest.json)")
    p.add_argument("--k", type=int, default=10, help="listeners per speaker clip: the model's K (default 10)")
    p.add_argument("--frames", type=int, default=750, help="frames per reaction: the evaluation's (default 750)")
    p.add_argument("--same-person", action="store_true",
                   help="keep the recorded listener's person (identity, expressiveness, lag); default a new person")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = write_oracle_reactions(args.root, args.split, args.out, args.k, args.frames, args.same_person)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"reactdiff oracle: error: {exc}", file=sys.stderr)
        return 2
    print(f"reactdiff oracle: {args.k} listeners per {args.split} speaker clip -> {Path(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
