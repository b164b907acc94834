"""`reactdiff inspect`: what a shard folder holds, and training (or eval) batches read back from it."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .. import cli_args, config
from . import shard_folder as mf
from .reader import BatchStream


def describe_index(folder: str) -> list[str]:
    index = mf.load_index(folder)
    t, s = index["totals"], index["settings"]
    return [f"{folder}: split {s['split']}, {t['samples']} dyadic samples ({t['role_samples']} role samples) in "
            f"{t['shards']} shards, {t['bytes'] / 1e6:.1f} MB, {t['rejects']} rejected, audio features "
            f"{s['audio_features']}, audio {s['audio_format']}, complete={index['complete']}"]


def read_batches(data_cfg, batches: int, train: bool = True) -> tuple[list[str], dict]:
    """Read `batches` batches (all of them in eval) and describe them; returns (lines, facts)."""
    stream = BatchStream(data_cfg, train=train)
    t0, n, windows, first = time.time(), 0, 0, None
    fv_sum, fv_sq, count, rows = 0.0, 0.0, 0, []
    for batch in stream:
        first = first or batch
        valid = batch["valid"].numpy()
        lis = batch["listener_fv"].numpy()[valid]
        fv_sum, fv_sq, count = fv_sum + lis.sum(0), fv_sq + (lis ** 2).sum(0), count + len(lis)
        rows += batch["matrix_row"].tolist()
        windows += len(batch["key"])
        n += 1
        if train and n >= batches:
            break
    secs = time.time() - t0
    mean = fv_sum / max(count, 1)
    std = np.sqrt(np.maximum(fv_sq / max(count, 1) - mean ** 2, 0))
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in first.items() if hasattr(v, "shape"))
    mode = "train windows" if train else "eval clips"
    lines = [f"{mode}: {n} batches, {windows} items in {secs:.2f} s ({windows / max(secs, 1e-9):.0f} items/s, "
             f"first batch included)",
             f"  batch: {shapes}",
             f"  listener 3DMM after {stream.dataset.normaliser.convention} normalisation: mean |mean| "
             f"{np.abs(mean).mean():.3f}, mean std {std.mean():.3f} over {count} frames"]
    if not train:
        lines.append(f"  neighbour-matrix rows seen: {len(rows)} ({len(set(rows))} distinct)")
    return lines, {"batches": n, "items": windows, "rows": rows, "seconds": secs}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff inspect", description=__doc__)
    p.add_argument("--config", help="YAML config (default: built-in defaults)")
    p.add_argument("--batches", type=int, default=10, help="training batches to read (default 10)")
    p.add_argument("--eval", action="store_true", help="read every clip once, full length (eval mode)")
    p.add_argument("--verify", action="store_true", help="check every shard's sha256 against index.json first "
                                                          "(reads every byte; exit 1 naming the corrupt ones)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. data.shards=shards/demo/train data.window=32")
    return p


def main(argv: list[str] | None = None) -> int:
    args = cli_args.parse(build_parser(), argv)
    try:
        cfg = config.load(args.config, args.overrides)
        lines = describe_index(cfg.data.shards)
        if args.verify:
            from .shard_index import ShardIndex

            index = ShardIndex.open(cfg.data.shards)
            problems = [p for i in range(len(index.files)) if (p := index.verify(i))]
            if problems:
                print("\n".join(problems), file=sys.stderr)
                return 1
            lines.append(f"  verified: {len(index.files)} shards match the sha256 in index.json")
        more, _ = read_batches(cfg.data, args.batches, train=not args.eval)
    except (config.ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"reactdiff inspect: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines + more))
    return 0
