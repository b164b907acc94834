"""Command lines that take config overrides: options and `key=value` overrides may come in any order."""
from __future__ import annotations

import argparse


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """parser.parse_args, with every `key=value` word wherever it stands collected into args.overrides (the parser's
    positional `overrides`, nargs="*")."""
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if a.startswith("-") or "=" not in a]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = [*args.overrides, *extra]
    return args
