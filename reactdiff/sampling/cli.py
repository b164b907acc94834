"""`reactdiff sample`: K reactions per speaker clip of a shard folder, from an export (or a random init)."""
from __future__ import annotations

import argparse
import sys

from .. import cli_args, config
from .job import SampleJob, add_options
from .run import sample


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff sample", description=__doc__)
    add_options(p)
    p.add_argument("--rank", type=int, default=0, help="this task's part of a fan-out (contiguous rows)")
    p.add_argument("--world-size", type=int, default=1, help="tasks in the fan-out")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = cli_args.parse(build_parser(), argv)
    try:
        job = SampleJob.from_args(args)
        job.check()
        sample(job, args.rank, args.world_size)
        return 0
    except (config.ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"reactdiff sample: error: {exc}", file=sys.stderr)
        return 2
