"""`reactdiff bench model` (tools/bench_model.py): generation speed of 10 x 750-frame reactions and the training
step, per model size, against the released ReactDiff schedule measured on the same machine in the same run.

The released code generates one reaction at a time in 16-frame windows (~1,200 network evaluations per
reaction); ours batches the K reactions of a clip and uses larger windows with one evaluation per step
(DPM-Solver++(2M)), and computes the speaker context once per window.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from .. import config
from ..model.export import build_model
from ..sampling.online import generate, window_starts
from ..sampling.samplers import network_evaluations
from .train import train_step_times

FRAMES, K = 750, 10


def fake_clip(frames: int, audio_dim: int, device: torch.device = torch.device("cpu"), clips: int = 1) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"speaker_fv": torch.randn(clips, frames, 58, generator=g).to(device),
            "speaker_feat": torch.randn(clips, frames, audio_dim, generator=g).to(device),
            "valid": torch.ones(clips, frames, dtype=torch.bool, device=device),
            "key": [f"bench{i}" for i in range(clips)], "role": ["a->b"] * clips}


def timed(fn, repeats: int = 1, device: torch.device = torch.device("cpu")) -> float:
    def run():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - t0) / repeats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff bench model", description=__doc__)
    p.add_argument("--sizes", default="small,paper", help="model sizes (default small,paper)")
    p.add_argument("--steps", default="10,25,50", help="sampling steps to time (default 10,25,50)")
    p.add_argument("--window", type=int, default=64, help="generation window (default 64)")
    p.add_argument("--history", type=int, default=64, help="context frames (default 64)")
    p.add_argument("--overlap", type=int, default=8, help="cross-faded frames between windows (default 8)")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--train-batch", type=int, default=32, help="windows per training step (default 32)")
    p.add_argument("--train-batches", help="comma-separated batch sizes for the eager vs compiled training table "
                                           "(default: --train-batch)")
    p.add_argument("--no-compile", action="store_true", help="skip the compiled training rows")
    p.add_argument("--gen-clips", default="1,4", help="speaker clips per generation call (sample.batch_size) to "
                                                      "compare, each with K reactions (default 1,4)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available); fp32 either way")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps_list = [int(s) for s in args.steps.split(",")]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"[bench] torch {torch.__version__}, {device} ({where}), {K} reactions x {FRAMES} frames, "
          f"window {args.window}, history {args.history}, overlap {args.overlap}, {args.sampler}")
    gen_rows, train_rows, clip_rows, released = [], [], [], {}
    for size in args.sizes.split(","):
        cfg = config.load(None, [f"model.size={size}", f"data.history={args.history}"])
        torch.manual_seed(0)
        model = build_model(cfg).eval().to(device)
        n_params = model.num_parameters()
        clip = fake_clip(FRAMES, cfg.model.audio_dim, device)
        windows = len(window_starts(FRAMES, args.window, args.overlap))
        for steps in steps_list:
            secs = timed(lambda: generate(model, clip, k=K, history=args.history, window=args.window,
                                          overlap=args.overlap, sampler=args.sampler, steps=steps), device=device)
            nfe = network_evaluations(args.sampler, steps) * windows
            gen_rows.append((size, n_params, steps, nfe, secs))
            print(f"[bench] {size}, {steps} steps: {secs:.2f} s for {K} reactions", flush=True)
        # clips x K reactions per network call (sample.batch_size clips): throughput per batch, at the first steps
        for clips in [int(c) for c in args.gen_clips.split(",")]:
            batch = fake_clip(FRAMES, cfg.model.audio_dim, device, clips)
            secs = timed(lambda: generate(model, batch, k=K, history=args.history, window=args.window,
                                          overlap=args.overlap, sampler=args.sampler, steps=steps_list[0]),
                         device=device)
            clip_rows.append((size, clips, steps_list[0], secs))
        # the released schedule: one reaction at a time, 16-frame windows, 25 steps -> ~1,200 evaluations
        small_clip = fake_clip(32, cfg.model.audio_dim, device)
        with torch.inference_mode():
            cache = model.unet.prepare(speaker_fv=small_clip["speaker_fv"], audio=small_clip["speaker_feat"],
                                       past_listener=torch.zeros(1, 16, 58, device=device), valid=small_clip["valid"])
            x, sigma = torch.randn(1, 16, 58, device=device), torch.ones(1, device=device)
            nfe_secs = timed(lambda: model.denoise(x, sigma, cache=cache), repeats=10, device=device)
        released[size] = (nfe_secs, math.ceil(FRAMES / 16))  # evaluations per sampling step and reaction
        print(f"[bench] {size}: {nfe_secs * 1000:.1f} ms per network evaluation of one 16-frame window", flush=True)
        # training step: forward + backward + AdamW on a batch of windows, eager and compiled (train.compile)
        for batch in [int(b) for b in (args.train_batches or str(args.train_batch)).split(",")]:
            for compiled in (False,) if args.no_compile else (False, True):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                first, secs, flops = train_step_times(size, batch, args.window, args.history, cfg.model.audio_dim,
                                                      repeats=3, device=device, compile=compiled)
                mem = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
                train_rows.append((size, n_params, batch, compiled, first, secs, flops, mem))
                print(f"[bench] {size}, batch {batch}, {'compiled' if compiled else 'eager'}: {secs:.3f} s/step "
                      f"(first step {first:.1f} s)", flush=True)

    print(f"\ngeneration of {K} reactions x {FRAMES} frames (30 s each)")
    print(f"{'size':<6} {'params':>11} {'steps':>5} {'evals':>6} {'wall s':>8} {'s/reaction':>10} {'frames/s':>9} "
          f"{'real-time x':>11} {'vs released':>11}")
    for size, n, steps, nfe, secs in gen_rows:
        per_reaction = secs / K
        nfe_secs, per_step = released[size]
        rel = nfe_secs * per_step * steps  # the released schedule at the same number of steps
        print(f"{size:<6} {n:>11,} {steps:>5} {nfe:>6} {secs:>8.1f} {per_reaction:>10.2f} {K * FRAMES / secs:>9.0f} "
              f"{K * FRAMES / 25 / secs:>11.2f} {rel / per_reaction:>10.1f}x")
    print("\nreleased ReactDiff schedule on this machine (16-frame windows, one reaction at a time), from a measured "
          "network evaluation of the same model:")
    for size, (nfe_secs, per_step) in released.items():
        print(f"  {size}: {nfe_secs * 1000:.1f} ms per evaluation x {per_step * 25} evaluations = "
              f"{nfe_secs * per_step * 25:.1f} s per reaction at 25 steps")
    print(f"\ngeneration throughput vs speaker clips per call (sample.batch_size; {K} reactions each, "
          f"{FRAMES} frames, the same reactions whatever the batch)")
    print(f"{'size':<6} {'clips':>5} {'rows/call':>9} {'steps':>5} {'wall s':>8} {'reactions/s':>11} {'vs 1 clip':>9}")
    one = {}
    for size, clips, steps, secs in clip_rows:
        one.setdefault(size, secs / clips)
        print(f"{size:<6} {clips:>5} {clips * K:>9} {steps:>5} {secs:>8.2f} {clips * K / secs:>11.2f} "
              f"{one[size] / (secs / clips):>8.2f}x")
    print(f"\ntraining step (forward + backward + AdamW, fp32, the model alone), windows of {args.window} frames "
          f"+ {args.history} context; compiled = torch.compile of the U-Net (train.compile), first step = compile")
    from ..train.run_log import peak_flops

    peak = peak_flops()
    print(f"{'size':<6} {'params':>11} {'batch':>5} {'mode':<9} {'first s':>8} {'s/step':>8} {'windows/s':>10} "
          f"{'frames/s':>9} {'vs eager':>8} {'MFU %':>6} {'peak GB':>7}")
    eager = {}
    for size, n, batch, compiled, first, secs, flops, mem in train_rows:
        if not compiled:
            eager[(size, batch)] = secs
        mfu = f"{100 * flops / secs / peak:>6.1f}" if peak else f"{'n/a':>6}"
        print(f"{size:<6} {n:>11,} {batch:>5} {'compiled' if compiled else 'eager':<9} {first:>8.1f} {secs:>8.3f} "
              f"{batch / secs:>10.1f} {batch * args.window / secs:>9.0f} {eager[(size, batch)] / secs:>7.2f}x {mfu} "
              f"{'n/a' if mem is None else f'{mem:.2f}':>7}")
    return 0
