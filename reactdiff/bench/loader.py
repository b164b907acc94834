"""`reactdiff bench loader` (tools/bench_loader.py): training windows per second from our shards vs a loader
that reads the raw REACT layout per item like the released ReactDiff dataset, same clips, same workers, one run.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from .. import config
from ..data.make_shards import make_shards
from ..data.normalise import FaceNormaliser
from ..data.reader import BatchStream
from ..data.synthetic import generate_dataset
from .raw_react_loader import RawReactDataset
from .stream_loader import StreamingWindows


def measure(batches, seconds: float) -> tuple[float, int]:
    """Windows/s over `seconds` of iteration, after a first batch that absorbs worker start-up."""
    it = iter(batches)
    next(it)
    n, t0 = 0, time.perf_counter()
    for batch in it:
        n += len(batch["listener_fv"])
        if time.perf_counter() - t0 >= seconds:
            break
    return n / (time.perf_counter() - t0), n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff bench loader", description=__doc__)
    p.add_argument("--react-root", help="REACT dataset to use (default: a synthetic one in a temp folder)")
    p.add_argument("--shards", help="train shards of that dataset with audio features (default: made here)")
    p.add_argument("--sessions", type=int, default=8, help="synthetic train sessions of 2 clips (default 8)")
    p.add_argument("--window", type=int, default=64, help="window length in frames (default 64)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for every loader (default 2)")
    p.add_argument("--seconds", type=float, default=8.0, help="measuring time per loader (default 8)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = Path(args.react_root) if args.react_root else Path(tmp) / "react"
        if not args.react_root:
            print(f"[bench] writing a synthetic REACT dataset ({args.sessions} train sessions x 2 clips, 751 frames)")
            generate_dataset(root, sessions={"train": args.sessions, "val": 0, "test": 0}, video="png",
                             video_size=16, workers=args.workers, progress=False)
        shards = Path(args.shards) if args.shards else Path(tmp) / "shards"
        if not args.shards:
            print("[bench] sharding it (logmel features)")
            make_shards(root, "train", shards, samples_per_shard=4, audio_features="logmel", workers=args.workers,
                        progress=False)
        norm = FaceNormaliser.from_files(shards / "mean_face.npy", shards / "std_face.npy", "zscore")
        base = [f"data.shards={shards}", f"data.window={args.window}", "data.history=0",
                f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}"]
        rows = []
        raw = RawReactDataset(root, "train", args.window, norm)
        loader = DataLoader(raw, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True)

        def endless(dl):
            while True:
                yield from dl

        print(f"[bench] measuring {args.seconds:.0f} s per loader, window {args.window}, batch {args.batch_size}, "
              f"{args.workers} workers")
        rows.append(("raw REACT layout, per-item wav+resample+npy+csv (released-code style)",) +
                    measure(endless(loader), args.seconds))
        stream = StreamingWindows(sorted(str(p) for p in shards.glob("*.tar")), args.window, 4, norm)
        rows.append(("stock webdataset streaming (every member decoded), feat, 4 windows per clip read",) +
                    measure(DataLoader(stream, batch_size=args.batch_size, num_workers=args.workers), args.seconds))
        for label, extra in (
            ("shards, audio=raw waveform, 1 window per clip read", ["data.audio=raw", "data.windows_per_clip=1"]),
            ("shards, audio=feat (logmel), 1 window per clip read", ["data.audio=feat", "data.windows_per_clip=1"]),
            ("shards, audio=feat (logmel), 4 windows per clip read", ["data.audio=feat", "data.windows_per_clip=4"]),
        ):
            cfg = config.load(None, base + extra)
            rows.append((label,) + measure(BatchStream(cfg.data), args.seconds))
        base_rate = rows[0][1]
        width = max(len(r[0]) for r in rows)
        print(f"\n{'loader':<{width}}  {'windows/s':>10}  {'ms/window':>9}  {'windows':>8}  {'vs raw':>7}")
        for label, rate, n in rows:
            print(f"{label:<{width}}  {rate:>10.1f}  {1000 / rate:>9.2f}  {n:>8d}  {rate / base_rate:>6.1f}x")
        print(f"\ndefault training config (feat, 4 windows per clip read): {rows[-1][1] / base_rate:.1f}x the raw "
              f"loader, {rows[-1][1] / rows[1][1]:.1f}x stock webdataset streaming the same shards")
    return 0
