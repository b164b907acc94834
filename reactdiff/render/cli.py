"""`reactdiff render`: mp4 videos of generated reactions (the output of `reactdiff sample`): grey FaceVerse meshes,
or photoreal frames from a PIRender checkpoint (--pirender, with the person's reference frame from --shards).

    out/<row>/k<k>.mp4     reaction k of neighbour-matrix row <row>; with --shards: [speaker | listener] side by
                           side with the speaker's audio
    out/<row>/gt.mp4       the true listener (--ground-truth), same layout
    out/<row>/grid.mp4     --grid: [speaker | true listener | reaction 1..K] in one labelled video, speaker audio
    out/settings.json      the settings, written before rendering (a folder never mixes videos made otherwise)
    out/render.json        every video of the render, written once they all exist (by the last fan-out task)

Each video is written atomically; a rerun renders only the videos that are missing (--overwrite: all of them).
"""
from __future__ import annotations

import argparse
import sys

from .faceverse import FaceVerseError
from .job import RenderJob, add_options
from .run import render


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff render", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p)
    p.add_argument("--rank", type=int, default=0, help="this task's part of a fan-out (every world-size-th video)")
    p.add_argument("--world-size", type=int, default=1, help="tasks in the fan-out")
    p.add_argument("--device", help="cuda or cpu (default: cuda when this machine has a GPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        render(RenderJob.from_args(args), args.rank, args.world_size)
        return 0
    except (FaceVerseError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"reactdiff render: error: {exc}", file=sys.stderr)
        return 2
