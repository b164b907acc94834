"""Command lines: options and `key=value` config overrides in any order; typed jobs from parsed options."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """parser.parse_args, with every `key=value` word wherever it stands collected into args.overrides (the parser's
    positional `overrides`, nargs="*")."""
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if a.startswith("-") or "=" not in a]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = [*args.overrides, *extra]
    return args


def job_from(cls, args: argparse.Namespace, **fixed):
    """A typed job (a dataclass: render.job.RenderJob, sampling.job.SampleJob) from the parsed options of the same
    names; `fixed` overrides them."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **fixed})


def with_absolute_paths(job, names: tuple[str, ...]):
    """`job` with its path fields `names` made absolute (array tasks may start in another folder)."""
    return dataclasses.replace(job, **{n: str(Path(getattr(job, n)).resolve()) for n in names if getattr(job, n)})


def named_folders(values: list[str] | None, flag: str) -> dict[str, Path]:
    """`NAME=DIR` words of a repeatable option -> {name: folder}; a malformed word or a missing folder is an error
    naming the option."""
    out: dict[str, Path] = {}
    for value in values or []:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"{flag} {value!r}: expected NAME=DIR")
        if name in out:
            raise ValueError(f"{flag}: the name {name!r} is given twice")
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{flag} {value!r}: {folder} is not a folder")
        out[name] = Path(folder).resolve()
    return out
