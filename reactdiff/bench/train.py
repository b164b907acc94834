"""`reactdiff bench train` (tools/bench_train.py): end-to-end training throughput through the real trainer
(shards -> DataLoader -> DeepSpeed engine -> optimiser) for the tiny and small models at 1 and 2 processes, and
the paper config against the released ReactDiff training step shape, estimated with our own implementation in the
same run: 16-frame windows (plus the previous 16 as context) and a wav2vec2-base forward on every step, where we
read cached features and train on 64-frame windows.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .. import cli_args, config
from ..data.make_shards import make_shards
from ..data.synthetic import generate_dataset
from ..model.export import build_model
from ..train.run_log import read_rows


def run_trainer(shards: Path, out: Path, name: str, procs: int, size: str, steps: int, window: int, history: int,
                batch: int, log_every: int, workers: int = 1, extra: tuple = ()) -> float:
    """Windows/s of the last logged window of a real training run."""
    args = ["-m", "reactdiff.train", f"data.shards={shards}", f"train.out={out}", f"name={name}",
            f"model.size={size}", f"train.steps={steps}", f"train.log_every={log_every}", "train.checkpoint_every=0",
            f"data.window={window}", f"data.history={history}", f"data.batch_size={batch}",
            f"data.num_workers={workers}", "data.windows_per_clip=4", "data.shuffle_buffer=64", "train.wandb=disabled",
            "train.zero_stage=0", *extra]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(procs),
               "--rdzv_backend", "c10d", "--rdzv_endpoint", "127.0.0.1:0", *args]
    else:
        cmd = [sys.executable, *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // procs))}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"training run {name} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return read_rows(out / name / "metrics.jsonl")[-1]["samples_per_s"]


def run_setting(run: Path) -> tuple[str, float | None, float]:
    """(precision the trainer chose, MFU % (GPU only), data-wait % of its last logged window) of a finished run."""
    ds = json.loads((run / "deepspeed.json").read_text())
    precision = "bf16" if ds["bf16"]["enabled"] else "fp16" if ds["fp16"]["enabled"] else "fp32"
    last = read_rows(run / "metrics.jsonl")[-1]
    return precision, last.get("mfu_pct"), last["data_wait_pct"]


def step_time(size: str, batch: int, window: int, history: int, audio_dim: int = 80, repeats: int = 2,
              device: str | torch.device = "cpu") -> float:
    """Seconds per fwd+bwd+AdamW step of the model alone (no data loading), fp32."""
    return train_step_times(size, batch, window, history, audio_dim, repeats, device)[1]


def train_step_times(size: str, batch: int, window: int, history: int, audio_dim: int = 80, repeats: int = 2,
                     device: str | torch.device = "cpu", compile: bool = False) -> tuple[float, float, int]:
    """(seconds of the first step -- compilation included --, seconds per later step, FLOPs per step) of the model
    alone (no data loading), fp32; compile: torch.compile of the U-Net as train.compile does it."""
    from ..train.run_log import count_flops

    cfg = config.load(None, [f"model.size={size}", f"model.audio_dim={audio_dim}"])
    torch.manual_seed(0)
    model = build_model(cfg).train().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=torch.device(device).type == "cuda")
    g = torch.Generator().manual_seed(0)
    t = history + window
    data = {"speaker_fv": torch.randn(batch, t, 58, generator=g), "listener_fv": torch.randn(batch, t, 58, generator=g),
            "speaker_feat": torch.randn(batch, t, audio_dim, generator=g),
            "valid": torch.ones(batch, t, dtype=torch.bool)}
    data = {k: v.to(device) for k, v in data.items()}
    flops = 3 * count_flops(lambda: model.training_loss(data, history, torch.Generator()))  # fwd + 2x for bwd
    if compile:
        model.unet.compile(dynamic=False)

    def step():
        loss = model.training_loss(data, history)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return first, (time.perf_counter() - t0) / repeats, flops


def wav2vec2_time(batch: int, frames: int) -> float:
    """A wav2vec2-base-sized forward (random weights: same cost) over `frames` video frames of audio per sample."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    model = Wav2Vec2Model(Wav2Vec2Config()).eval()
    audio = torch.randn(batch, frames * 640)
    with torch.no_grad():
        model(audio[:2])
        t0 = time.perf_counter()
        model(audio)
    return time.perf_counter() - t0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff bench train", description=__doc__)
    p.add_argument("--sizes", default="tiny,small", help="sizes for the 1- vs 2-process table (default tiny,small)")
    p.add_argument("--procs", default="1,2", help="process counts (default 1,2)")
    p.add_argument("--steps", type=int, default=30, help="optimiser steps per run (default 30)")
    p.add_argument("--batch", type=int, default=16, help="windows per rank per step (default 16)")
    p.add_argument("--paper-batch", type=int, default=32, help="batch for the paper comparison (default 32)")
    p.add_argument("--sessions", type=int, default=8, help="synthetic train sessions of 2 clips (default 8)")
    p.add_argument("--skip-paper", action="store_true", help="only the size x process table")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers per rank (default 1)")
    p.add_argument("overrides", nargs="*", help="config overrides for the runs, e.g. train.ema_every=10")
    return p


def main(argv: list[str] | None = None) -> int:
    args = cli_args.parse(build_parser(), argv)
    window, history = 64, 64
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        print(f"[bench] synthetic REACT dataset ({args.sessions} train sessions x 2 clips), shards with logmel "
              f"features")
        generate_dataset(tmp / "react", sessions={"train": args.sessions, "val": 0, "test": 0}, video="png",
                         video_size=16,
                         workers=2, progress=False)
        make_shards(tmp / "react", "train", tmp / "shards", samples_per_shard=4, audio_features="logmel", workers=2,
                    progress=False)
        rows = []
        for size in args.sizes.split(","):
            for procs in (int(p) for p in args.procs.split(",")):
                rate = run_trainer(tmp / "shards", tmp / "runs", f"{size}-{procs}", procs, size, args.steps, window,
                                   history, args.batch, max(1, args.steps // 3), args.workers, tuple(args.overrides))
                precision, mfu, wait = run_setting(tmp / "runs" / f"{size}-{procs}")
                rows.append((size, procs, rate, mfu, wait))
                print(f"[bench] {size} x {procs} process(es): {rate:.1f} windows/s")
        where = f"GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU"
        print(f"\nend-to-end training throughput (real trainer, window {window} + {history} context, "
              f"{args.batch} windows per rank per step, ZeRO 0, {precision}, {args.workers} loader worker(s), "
              f"{where})")
        print(f"{'size':<6} {'procs':>5} {'windows/s':>10} {'frames/s':>9} {'vs 1 proc':>9} {'MFU':>6} "
              f"{'data wait':>9}")
        for size, procs, rate, mfu, wait in rows:
            one = next(r for s, p, r, *_ in rows if s == size and p == 1) if any(
                s == size and p == 1 for s, p, *_ in rows) else rate
            mfu_text = f"{mfu:5.1f}%" if mfu is not None else "     -"
            print(f"{size:<6} {procs:>5} {rate:>10.1f} {rate * window:>9.0f} {rate / one:>8.2f}x {mfu_text} "
                  f"{wait:>8.0f}%")
        if args.skip_paper:
            return 0
        b = args.paper_batch
        print("\n[bench] paper config: real trainer (1 process), then the released step shape with our model")
        paper_rate = run_trainer(tmp / "shards", tmp / "runs", "paper-1", 1, "paper", 6, window, history, b, 3)
        ours_step = step_time("paper", b, window, history)
        released_step = step_time("paper", b, 16, 16)
        w2v = wav2vec2_time(b, 32)
        released_e2e = b * 16 / (released_step + w2v)
        print(f"\npaper config ({b} windows per step)")
        print(f"{'what':<62} {'s/step':>7} {'frames/s':>9}")
        label = "ours, model step alone (64-frame windows + 64 context)"
        print(f"{label:<62} {ours_step:>7.2f} {b * 64 / ours_step:>9.0f}")
        print(f"{'ours, end to end through the trainer':<62} {b * 64 / (paper_rate * 64):>7.2f} "
              f"{paper_rate * 64:>9.0f}")
        print(f"{'released shape, model step alone (16-frame windows + 16)':<62} {released_step:>7.2f} "
              f"{b * 16 / released_step:>9.0f}")
        print(f"{'released shape + wav2vec2-base on every step (end to end)':<62} {released_step + w2v:>7.2f} "
              f"{released_e2e:>9.0f}")
        print(f"\nend-to-end frames/s, ours vs the released shape: {paper_rate * 64 / released_e2e:.1f}x")
    return 0
