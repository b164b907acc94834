"""Command line: write a synthetic REACT dataset (`tools/make_synthetic_react.py --out DIR`)."""
from __future__ import annotations

import argparse
import sys

from ..frame_layout import CLIP_FRAMES
from .dataset import generate_dataset
from .writer import VIDEO_KINDS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make_synthetic_react",
        description="Write a synthetic dataset in the REACT layout (3DMM, audio, emotion, video, pair lists, "
                    "neighbour matrices, mean/std) with a planted speaker->listener coupling.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output root (must be empty unless --force)")
    p.add_argument("--seed", type=int, default=0, help="global seed (>= 0); same arguments give identical bytes")
    p.add_argument("--train-sessions", type=int, default=3, help="sessions in the train split (>= 1)")
    p.add_argument("--val-sessions", type=int, default=1, help="sessions in the val split")
    p.add_argument("--test-sessions", type=int, default=2, help="sessions in the test split")
    p.add_argument("--clips-per-session", type=int, default=2, help="dyadic clips per session")
    p.add_argument("--layout", choices=("react2024", "mars"), default="react2024",
                   help="react2024: NoXI/RECOLA-style folders at 25 fps; mars: the REACT 2025/2026 layout (session "
                        "folders, clips of --min-frames..--max-frames at 30 fps, no video)")
    p.add_argument("--frames", type=int, default=CLIP_FRAMES, help="frames per clip (react2024, 25 fps)")
    p.add_argument("--min-frames", type=int, default=100, help="shortest clip (mars, 30 fps)")
    p.add_argument("--max-frames", type=int, default=2000, help="longest clip (mars, 30 fps)")
    p.add_argument("--video", choices=VIDEO_KINDS, default="png",
                   help="Video_files as <clip>/1.png.. folders, <clip>.mp4, or none")
    p.add_argument("--video-size", type=int, default=64, help="frame width = height in pixels (even for mp4)")
    p.add_argument("--templates", type=int, default=4,
                   help="script templates per split (react2024: clips sharing one are neighbours; mars: "
                        "the session decides the appropriate sets, templates only vary what is acted out)")
    p.add_argument("--workers", type=int, default=1, help="processes generating clips (output does not depend on it)")
    p.add_argument("--force", action="store_true", help="replace a synthetic dataset already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sessions = {"train": args.train_sessions, "val": args.val_sessions, "test": args.test_sessions}
    if args.layout == "mars":
        return _mars(args, sessions)
    try:
        s = generate_dataset(
            args.out, seed=args.seed,
            sessions={"train": args.train_sessions, "val": args.val_sessions, "test": args.test_sessions},
            clips_per_session=args.clips_per_session, frames=args.frames, video=args.video,
            video_size=args.video_size, templates=args.templates, workers=args.workers,
            progress=not args.quiet, force=args.force,
        )
    except (ValueError, FileExistsError, NotADirectoryError) as e:
        print(f"make_synthetic_react: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        per = ", ".join(f"{k}: {v['sessions']} sessions / {v['clips']} clips ({v['samples']} mirrored samples)"
                        for k, v in s["splits"].items())
        print(f"Wrote a synthetic REACT dataset to {s['root']} ({per}); {args.frames} frames per clip, video "
              f"{args.video} at {args.video_size}px, {args.templates} templates per split, seed {args.seed}; "
              f"{s['bytes'] / 1e6:.1f} MB in {s['seconds']:.1f} s with {args.workers} worker(s).")
    return 0


def _mars(args, sessions: dict) -> int:
    from .mars import generate_mars

    try:
        s = generate_mars(args.out, seed=args.seed, sessions=sessions, clips_per_session=args.clips_per_session,
                          min_frames=args.min_frames, max_frames=args.max_frames, templates=args.templates,
                          progress=not args.quiet, force=args.force)
    except (ValueError, FileExistsError) as e:
        print(f"make_synthetic_react: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"Wrote a synthetic MARS dataset to {s['root']}: {s['clips']} clips of {args.min_frames}-"
              f"{args.max_frames} frames at 30 fps ({s['frames']} frames), {args.templates} templates per split, "
              f"seed {args.seed}; {s['bytes'] / 1e6:.1f} MB in {s['seconds']:.1f} s.")
    return 0
