"""`reactdiff bench watch` (tools/bench_watch.py): what watching a run costs -- the validation loss and the samples
of validation clips -- as a share of its training time, per config, measured in the same run on this machine.

For each config: the time of one training step (forward + backward + AdamW on the config's micro-batch, the model
alone), of one validation pass (train.val_windows x train.val_levels windows through the real ValidationSet code,
raw + EMA weights) and of one sampling pass (train.sample_clips x train.sample_k reactions of data.eval_frames
frames at train.sample_steps, the real preview code), on one process; then

    share = (validation / val_every + samples / sample_every) / step

With R ranks validation and samples are split R ways while a step's micro-batch stays per rank: the share falls
about R-fold; the table shows one rank (the most it can be). Inputs are random tensors of the real shapes.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from .. import config
from ..model.export import build_model
from ..train.previews import PreviewClips
from ..train.validation import ValidationSet, sigma_grid
from .train import step_time



def fake_validation(cfg, model) -> ValidationSet:
    d, t = cfg.data, cfg.train
    g = torch.Generator().manual_seed(0)
    n, frames = t.val_windows, d.history + d.window
    batch = {"speaker_fv": torch.randn(n, frames, 58, generator=g),
             "listener_fv": torch.randn(n, frames, 58, generator=g),
             "speaker_feat": torch.randn(n, frames, cfg.model.audio_dim, generator=g),
             "valid": torch.ones(n, frames, dtype=torch.bool)}
    noise = torch.randn(n, t.val_levels, d.window, model.dim, generator=g)
    return ValidationSet(batch, sigma_grid(model.density, t.val_levels), noise, d.history, Path("."))


def fake_clips(cfg) -> PreviewClips:
    n, frames = cfg.train.sample_clips, cfg.data.eval_frames
    g = torch.Generator().manual_seed(1)
    batch = {"speaker_fv": torch.randn(n, frames, 58, generator=g),
             "speaker_feat": torch.randn(n, frames, cfg.model.audio_dim, generator=g),
             "valid": torch.ones(n, frames, dtype=torch.bool), "matrix_row": torch.arange(n),
             "key": [f"clip{i}" for i in range(n)], "role": ["a->b"] * n}
    listeners = np.random.default_rng(0).normal(size=(n, frames, 58)).astype(np.float32)
    return PreviewClips(batch, listeners, np.eye(n, dtype=bool), listeners.copy(), Path("."))


def measure(cfg, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    vset, clips = fake_validation(cfg, model), fake_clips(cfg)
    t0 = time.perf_counter()
    for _ in range(2):  # raw and EMA weights: two passes
        vset.loss(model, batch_size=cfg.data.batch_size)
    val = time.perf_counter() - t0
    t0 = time.perf_counter()
    reactions = clips.sample(model, cfg)
    clips.score(reactions)
    samples = time.perf_counter() - t0
    step = step_time(cfg.model.size.value, cfg.data.batch_size, cfg.data.window, cfg.data.history,
                     cfg.model.audio_dim, repeats=repeats)
    t = cfg.train
    share_val = val / t.val_every / step if t.val_every else 0.0
    share_samples = samples / t.sample_every / step if t.sample_every else 0.0
    return {"params": model.num_parameters(), "step": step, "validation": val, "samples": samples,
            "share_val": share_val, "share_samples": share_samples}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff bench watch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=f"{config.packaged('demo')},{config.packaged('paper')}",
                   help="comma-separated run configs (default: the demo and paper configs)")
    p.add_argument("--repeats", type=int, default=2, help="timed training steps per config (default 2)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("overrides", nargs="*", help="overrides for every config, e.g. train.val_every=500")
    return p


def main(argv: list[str] | None = None) -> int:
    from .. import cli_args

    args = cli_args.parse(build_parser(), argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"[bench] torch {torch.__version__}, cpu ({torch.get_num_threads()} threads), one process")
    rows = []
    for path in args.configs.split(","):
        cfg = config.load(path, args.overrides)
        print(f"[bench] {cfg.name}: measuring ...", flush=True)
        rows.append((cfg, measure(cfg, args.repeats)))
    print("\nwatching a run: validation + samples as a share of training time (one rank; R ranks: ~1/R of it)")
    print(f"{'config':<16} {'params':>11} {'step s':>8} {'val s':>8} {'every':>6} {'samples s':>10} {'every':>6} "
          f"{'val %':>6} {'samples %':>9} {'total %':>8}")
    for cfg, r in rows:
        t = cfg.train
        print(f"{cfg.name:<16} {r['params']:>11,} {r['step']:>8.3f} {r['validation']:>8.2f} {t.val_every:>6} "
              f"{r['samples']:>10.2f} {t.sample_every:>6} {100 * r['share_val']:>6.2f} "
              f"{100 * r['share_samples']:>9.2f} {100 * (r['share_val'] + r['share_samples']):>8.2f}")
    for cfg, r in rows:
        t = cfg.train
        print(f"  {cfg.name}: validation = {t.val_windows} windows x {t.val_levels} levels x 2 (raw + EMA) = "
              f"{r['validation'] / r['step']:.1f} training steps; samples = {t.sample_clips} clips x {t.sample_k} "
              f"reactions x {cfg.data.eval_frames} frames at {t.sample_steps} steps = "
              f"{r['samples'] / r['step']:.1f} training steps")
    return 0
