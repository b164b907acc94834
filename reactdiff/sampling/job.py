"""What a sampling run makes, as one typed value: `reactdiff sample` parses its options into a SampleJob, and the
cluster launcher builds the same SampleJob for each array task of an evaluation (sampling.run.sample(job, rank,
world_size)). The options are declared once, here, for both."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import cli_args


@dataclass(frozen=True)
class SampleJob:
    shards: str  # the clips to react to
    out: str  # reactions/*.npy + manifest.json
    export: str | None = None  # an export folder; None with random_init
    random_init: bool = False
    config: str | None = None  # default: the export's own config
    overrides: tuple[str, ...] = field(default_factory=tuple)  # config key=value
    limit: int | None = None
    device: str | None = None  # None: cuda where the job runs when it has a GPU, else cpu
    overwrite: bool = False
    quiet: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "SampleJob":
        return cli_args.job_from(cls, args, overrides=tuple(getattr(args, "overrides", None) or ()))

    def absolute(self) -> "SampleJob":
        paths = ("shards", "out", "export") + (("config",) if self.config and Path(self.config).is_file() else ())
        return cli_args.with_absolute_paths(self, paths)  # a config given by name stays a name

    def on_device(self) -> str:
        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def check(self) -> None:
        if bool(self.export) == bool(self.random_init):
            raise ValueError("give one of --export (a trained model) and --random-init (untrained weights)")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1; got {self.limit}")


def add_options(p: argparse.ArgumentParser) -> None:
    """The options of a SampleJob (`reactdiff sample`)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--export", help="export folder (model.safetensors + config.yaml) written by training")
    src.add_argument("--random-init", action="store_true", help="untrained weights (smoke tests, benchmarks)")
    p.add_argument("--config", help="config YAML (default: the export's own config; required with --random-init "
                                    "unless the defaults suit)")
    p.add_argument("--shards", required=True, help="shard folder of the clips to react to (e.g. shards/react/test)")
    p.add_argument("--out", required=True, help="output folder (reactions/*.npy + manifest.json)")
    p.add_argument("--limit", type=int, help="only the first N speaker role samples")
    p.add_argument("--device", help="cuda or cpu (default: cuda when this machine has a GPU)")
    p.add_argument("--overwrite", action="store_true", help="replace reactions made with other settings in --out")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. sample.steps=10 sample.k=10")
