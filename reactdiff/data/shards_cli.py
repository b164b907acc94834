"""`make_shards`: a REACT 2024 or MARS (REACT 2025/2026) split -> WebDataset shards + index.json (+ rejects.jsonl)."""
from __future__ import annotations

import argparse
import os
import sys

from . import mars_layout
from .make_shards import ShardingError, make_shards
from .mars_shards import FEATURE_SPECS, make_mars_shards

EXIT_REJECTS = 3  # some clips were rejected and --allow-rejects was not given


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make_shards",
        description="Pack one split of a REACT 2024 dataset (root/{split}/3D_FV_files, Audio_files, Emotion, "
                    "Video_files + root/{split}.csv) or of MARS, REACT 2025/2026's data (root/{split}/coefficients, "
                    "facial-attributes, audio, audio-features, video-face-crop/{speaker,listener}/session<N>/) into "
                    "deterministic WebDataset tar shards with an index.json manifest. One sample per dyadic clip "
                    "(a pair-list row; for MARS a session's stem with both roles).",
        epilog=f"Exit codes: 0 done; 2 bad arguments or output in the way; {EXIT_REJECTS} clips were rejected "
               "(see rejects.jsonl) and --allow-rejects was not given.")
    p.add_argument("--react-root", required=True, help="dataset root (holds train/ val/ test/)")
    p.add_argument("--layout", default="auto", choices=("auto", "react2024", "mars"),
                   help="the dataset's layout (default auto: mars when <root>/<split>/coefficients/{speaker,"
                        "listener}/ exist, else react2024)")
    p.add_argument("--split", required=True, choices=("train", "val", "test"))
    p.add_argument("--out", required=True, help="output folder for <split>-NNNNNN.tar, index.json, rejects.jsonl")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="worker processes that read and encode clips (default: min(4, cores))")
    p.add_argument("--samples-per-shard", type=int, default=64,
                   help="dyadic clips per shard (default 64, ~160 MB with flac audio)")
    p.add_argument("--audio-features", default="none",
                   help="precompute audio features: none | logmel | wav2vec2:/path/to/hf_folder (default none); "
                        f"MARS: {FEATURE_SPECS}")
    p.add_argument("--audio-format", default="flac", choices=("flac", "wav"),
                   help="how the 16 kHz audio is stored (16-bit, lossless either way; default flac)")
    p.add_argument("--pair-list", help="pair list csv (default: <react-root>/<split>.csv)")
    p.add_argument("--stats-dir", help="folder with mean_face.npy/std_face.npy to copy next to the shards "
                                       "(default: --react-root; skipped when absent)")
    p.add_argument("--limit", type=int, help="only the first N pair-list rows (quick tries)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run, keeping its verified shards")
    p.add_argument("--overwrite", action="store_true", help="delete existing shards in --out and start over")
    p.add_argument("--allow-rejects", action="store_true", help="exit 0 even if some clips were rejected")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume and args.overwrite:
        print("make_shards: --resume and --overwrite exclude each other", file=sys.stderr)
        return 2
    tool_args = {k: v for k, v in vars(args).items() if k not in ("quiet", "workers")}
    layout = args.layout
    if layout == "auto":
        layout = "mars" if mars_layout.is_mars(args.react_root, args.split) else "react2024"
        print(f"make_shards: {args.react_root}/{args.split} is a {'MARS' if layout == 'mars' else 'REACT 2024'} "
              f"split (--layout {layout})", file=sys.stderr)
    try:
        common = dict(workers=args.workers, samples_per_shard=args.samples_per_shard,
                      audio_features=args.audio_features, audio_format=args.audio_format, resume=args.resume,
                      overwrite=args.overwrite, limit=args.limit, stats_dir=args.stats_dir, tool_args=tool_args,
                      progress=not args.quiet)
        if layout == "mars":
            if args.pair_list:
                raise ShardingError("MARS has no pair list: a speaker and its listener share the stem")
            index = make_mars_shards(args.react_root, args.split, args.out, **common)
        else:
            index = make_shards(args.react_root, args.split, args.out, pair_list=args.pair_list, **common)
    except (ShardingError, ValueError, FileNotFoundError) as exc:
        print(f"make_shards: error: {exc}", file=sys.stderr)
        return 2
    t, run = index["totals"], index["run"]
    print(f"make_shards {args.split}: {t['samples']} dyadic samples ({t['role_samples']} role samples) in "
          f"{t['shards']} shards, {t['bytes'] / 1e6:.1f} MB -> {args.out}; wrote {run['shards_written']} shards, "
          f"kept {run['shards_kept']} verified; {t['rejects']} rejected; {run['seconds']:.1f} s")
    if t["rejects"]:
        print(f"make_shards: {t['rejects']} clip(s) rejected, reasons in {os.path.join(args.out, 'rejects.jsonl')}",
              file=sys.stderr)
        if not args.allow_rejects:
            return EXIT_REJECTS
    return 0
