"""`reactdiff bench render` (tools/bench_render.py): rendering speed of one 750-frame reaction, against rendering
the same frames one at a time (how a per-frame render loop runs), in the same run.

grey: the torch rasteriser and pytorch3d (when it imports; FaceVerse's ModelRenderer, the same frames) on a
synthetic head in the FaceVerse file format with about the real model's size (28.5k vertices, 57k triangles; the
simplified real mesh has 6.3k); pirender: the generator with random weights (same cost as trained ones) at 224 px.
Frames are produced, not encoded (mp4 encoding is the same for all). Each backend's batched row is also compared
with the torch rasteriser's batched row of the same run.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ..render import p3d
from ..render.faceverse import FaceVerseModel
from ..render.grey import GreyRenderer
from ..render.pirender import FaceGenerator, PIRenderer
from ..render.synthetic_model import make_model


def coefficients(frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.zeros((frames, 58), np.float32)
    c[:, :52] = rng.uniform(0, 0.5, (frames, 52))
    c[:, 52:55] = [3.14, 0, 0] + 0.1 * np.sin(np.arange(frames)[:, None] / 10 + [0, 1, 2])
    c[:, 55:58] = [0, 0, 1.84]
    return c


def timed(fn, device: torch.device) -> float:
    t0 = time.perf_counter()
    for _ in fn():
        pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff bench render", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=750, help="grey-mesh frames to render (default 750)")
    p.add_argument("--pirender-frames", type=int, help="PIRender frames (default: 750 on GPU, 16 on CPU)")
    p.add_argument("--p3d-frames", type=int, help="pytorch3d frames (default: 750 on GPU, 8 on CPU, where its "
                                                  "rasteriser is ~100x slower)")
    p.add_argument("--size", type=int, default=224, help="frame size (default 224)")
    p.add_argument("--chunk", type=int, default=32, help="frames per batched call (default 32)")
    p.add_argument("--rings", type=int, default=150, help="synthetic head resolution (default 150 x 190 = 28.5k "
                                                          "vertices)")
    p.add_argument("--segments", type=int, default=190)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    model = FaceVerseModel.from_dict(make_model(args.rings, args.segments), source="synthetic")
    print(f"[bench render] {where}; head {model.num_vertices} vertices, {model.tri.shape[0]} triangles; "
          f"{args.size} px", flush=True)
    rows = []
    coeffs = coefficients(args.frames)
    batched, single = GreyRenderer(model, args.size, device=device, chunk=args.chunk), \
        GreyRenderer(model, args.size, device=device, chunk=1)
    next(batched.frames(coeffs[:2]))  # warm-up
    rows.append(("grey torch", "one frame per call", args.frames, timed(lambda: single.frames(coeffs), device)))
    rows.append(("grey torch", f"{args.chunk} frames per call", args.frames, timed(lambda: batched.frames(coeffs),
                                                                                   device)))
    why = p3d.unavailable()
    if why is None:
        n3 = args.p3d_frames or (750 if device.type == "cuda" else 8)
        c3 = coeffs[:n3]
        b3 = GreyRenderer(model, args.size, device=device, chunk=args.chunk, rasteriser="pytorch3d")
        s3 = GreyRenderer(model, args.size, device=device, chunk=1, rasteriser="pytorch3d")
        next(b3.frames(c3[:2]))
        rows.append(("grey p3d", "one frame per call", n3, timed(lambda: s3.frames(c3), device)))
        rows.append(("grey p3d", f"{args.chunk} frames per call", n3, timed(lambda: b3.frames(c3), device)))
    else:
        print(f"[bench render] no pytorch3d rows: {why}")
    n = args.pirender_frames or (750 if device.type == "cuda" else 16)
    torch.manual_seed(0)
    gen = FaceGenerator()
    ref = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    pc = coefficients(n, seed=1)
    p1, pn = PIRenderer(gen, args.size, device, chunk=1), PIRenderer(gen, args.size, device, chunk=16)
    next(pn.frames(pc[:2], ref))
    rows.append(("PIRender", "one frame per call", n, timed(lambda: p1.frames(pc, ref), device)))
    rows.append(("PIRender", "16 frames per call", n, timed(lambda: pn.frames(pc, ref), device)))
    torch_fps = rows[1][2] / rows[1][3]
    print(f"{'renderer':<10} {'how':<22} {'frames':>6} {'seconds':>8} {'frames/s':>9} {'real-time x':>11} "
          f"{'vs per-frame':>12} {'vs torch batched':>16}")
    for i, (name, how, frames, secs) in enumerate(rows):
        base = rows[i - i % 2]
        vs_torch = f"{frames / secs / torch_fps:>15.3g}x" if name.startswith("grey") else f"{'':>16}"
        print(f"{name:<10} {how:<22} {frames:>6} {secs:>8.2f} {frames / secs:>9.1f} {frames / secs / 25:>11.2f} "
              f"{(base[3] / base[2]) / (secs / frames):>11.1f}x {vs_torch}")
    return 0
