"""`reactdiff train` / `python -m reactdiff.train`: DeepSpeed training from a YAML config + overrides.

Exit codes: 0 done; 2 bad config; 75 preempted (checkpoint saved: run the same command again to continue).
"""
from __future__ import annotations

import argparse
import sys

from .. import cli_args, config, dist


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="config keys (set with key=value overrides, anywhere on the command line; "
                                       "`reactdiff config --print` shows a resolved config):\n"
                                       + config.describe_keys())
    p.add_argument("--config", help="YAML config (configs/*.yaml); omitted: built-in defaults")
    p.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # the deepspeed launcher's
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100 train.zero_stage=2")
    return p


def main(argv: list[str] | None = None) -> int:
    args = cli_args.parse(build_parser(), argv)
    try:
        cfg = config.load(args.config, args.overrides)
    except config.ConfigError as exc:
        print(f"reactdiff train: error: {exc}", file=sys.stderr)
        return 2
    from .loop import train

    try:
        return train(cfg)
    except (config.ConfigError, FileNotFoundError, ValueError) as exc:  # ours: they name the file or key
        print(f"reactdiff train: error: {exc}", file=sys.stderr)
        return 2
    finally:  # the process group's threads joined before the interpreter exits: left to static destruction, a
        dist.shutdown()  # rank that finished first was seen to abort ("terminate called"), failing a done run
