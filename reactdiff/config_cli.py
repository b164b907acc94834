"""`reactdiff config`: the resolved run config (schema defaults <- --config YAML <- overrides), or every key.

    reactdiff config --print --config configs/paper.yaml train.steps=100     # the YAML a run would save
    reactdiff config --keys                                                  # every key: type, default, comment
"""
from __future__ import annotations

import argparse
import sys

from . import cli_args, config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff config", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--print", action="store_true", help="print the resolved config as YAML (the default)")
    what.add_argument("--keys", action="store_true", help="list every key with its type, default and comment")
    p.add_argument("--config", help="YAML config (configs/*.yaml); omitted: the built-in defaults")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100")
    return p


def main(argv: list[str] | None = None) -> int:
    args = cli_args.parse(build_parser(), argv)
    if args.keys:
        print(config.describe_keys())
        return 0
    try:
        cfg = config.load(args.config, args.overrides)
    except config.ConfigError as exc:
        print(f"reactdiff config: error: {exc}", file=sys.stderr)
        return 2
    print(config.to_yaml(cfg), end="")
    return 0
