"""What a render makes, as one typed value: `reactdiff render` parses its options into a RenderJob, and the cluster
launcher builds the same RenderJob and hands it to each array task (render.run.render(job, rank, world_size)).
The options are declared once, here, for both."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from .. import cli_args
from . import p3d

PATH_FIELDS = ("samples", "out", "faceverse", "shards", "pirender", "identity")


@dataclass(frozen=True)
class RenderJob:
    samples: str  # output folder of `reactdiff sample` / eval (reactions/ + manifest)
    out: str
    faceverse: str | None = None
    shards: str | None = None
    pirender: str | None = None
    ground_truth: bool = False
    grid: bool = False
    identity: str | None = None
    simplified: bool = False
    rasteriser: str = "auto"
    size: int = 224
    rows: str | None = None
    k: int | None = None
    frames: int | None = None
    batch: int | None = None
    device: str | None = None  # None: cuda where the job runs when it has a GPU, else cpu
    overwrite: bool = False
    quiet: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RenderJob":
        return cli_args.job_from(cls, args)

    def absolute(self) -> "RenderJob":
        return cli_args.with_absolute_paths(self, PATH_FIELDS)

    def on_device(self) -> str:
        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def check(self) -> None:
        """Refuse option combinations that cannot render, naming what is missing."""
        for name in ("k", "frames", "batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1; got {getattr(self, name)}")
        if self.rasteriser not in p3d.BACKENDS:
            raise ValueError(f"--rasteriser {self.rasteriser!r}: expected one of {', '.join(p3d.BACKENDS)}")
        if self.ground_truth and not self.shards:
            raise ValueError("--ground-truth needs --shards (the true listener is read from them)")
        if self.grid and not self.shards:
            raise ValueError("--grid needs --shards (the speaker and the true listener are read from them)")
        if self.grid and self.pirender:
            raise ValueError("--grid draws grey meshes; render PIRender videos without --grid")
        if not self.pirender and not self.faceverse:
            raise ValueError("grey mesh frames need --faceverse (the FaceVerse model file); or give --pirender")
        if self.pirender and not self.shards:
            raise ValueError("--pirender needs --shards (each person's reference frame is read from them)")


def add_options(p: argparse.ArgumentParser, overwrite: bool = True) -> None:
    """The options of a RenderJob (`reactdiff render`, and `launch/slurm.py render` without --overwrite: a requeued
    task must continue from the videos it wrote, never start over)."""
    p.add_argument("--reactions", "--samples", dest="samples", required=True, metavar="DIR",
                   help="output folder of `reactdiff sample` or an evaluation (reactions/ + manifest); --samples is "
                        "its old name")
    p.add_argument("--faceverse", help="FaceVerse v2 model file (faceverse_simple_v2.npy): grey meshes (needed unless "
                                       "--pirender)")
    p.add_argument("--out", required=True, help="output folder for the videos")
    p.add_argument("--shards", help="the shard folder the samples were made from: adds the speaker (mesh + audio) "
                                    "beside each reaction, and enables --ground-truth")
    p.add_argument("--pirender", help="REACT-retrained PIRender generator checkpoint: photoreal frames (needs --shards "
                                      "for the reference images; --size a multiple of 32)")
    p.add_argument("--ground-truth", action="store_true", help="also render each row's true listener (gt.mp4)")
    p.add_argument("--grid", action="store_true", help="one video per row instead: [speaker | true listener | "
                                                        "reactions] side by side (grid.mp4; needs --shards)")
    p.add_argument("--identity", help="npy with the FaceVerse identity coefficients to render with (the first 150 "
                                      "values are used; e.g. reference_full.npy); default: the mean face")
    p.add_argument("--simplified", action="store_true", help="use the model's simplified mesh (select_id/tri_select)")
    p.add_argument("--rasteriser", default="auto", choices=p3d.BACKENDS,
                   help="grey meshes: pytorch3d (the REACT renderer's library; the `pytorch3d` extra), torch (ours; "
                        "the same frames), or auto (default: pytorch3d on a GPU when it imports, else torch: on the "
                        "CPU pytorch3d is 90-430x slower); recorded in settings.json")
    p.add_argument("--size", type=int, default=224, help="frame size in pixels (default 224, as the REACT renderer)")
    p.add_argument("--rows", help="comma-separated neighbour-matrix rows (default: all in the manifest)")
    p.add_argument("--k", type=int, help="render only the first K reactions of each row (default: all)")
    p.add_argument("--frames", type=int, help="only the first N frames (default: all)")
    p.add_argument("--batch", type=int, help="frames per renderer call (default 32 for grey meshes, 16 for PIRender; "
                                             "lower it if the GPU runs out of memory)")
    if overwrite:
        p.add_argument("--overwrite", action="store_true", help="render again the videos that exist")
