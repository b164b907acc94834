"""`tools/bench_metrics.py`: FRDist's DTW, ours (batched anti-diagonal DTW in torch, reactdiff.eval.dtw) against the
REACT code's approach (tslearn.metrics.dtw pair by pair, one multiprocessing.Pool task per speaker clip), on the same
random inputs in the same run. Prints seconds and pairs/s of both, the speed-up, and the largest relative difference
between the per-pair DTW values.

"cold" includes what a fresh evaluation pays: the pool's start and numba's compilation of tslearn's DTW in every
worker for the reference; torch's first-call costs for ours. "warm" repeats the same work on the warm pool / process.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from functools import partial

import numpy as np
import torch

from ..eval import dtw_triton
from ..eval.dtw import default_device, dtw_indexed, resolve_backend
from ..eval.metrics import pair_index


def _reference_row(row_neighbours, row_pred, gt=None):
    """The REACT code's per-clip task: tslearn DTW of every sample against every appropriate reaction, float32 in."""
    from tslearn.metrics import dtw

    js = np.argwhere(row_neighbours == 1).reshape(-1)
    return [[dtw(row_pred[i].astype(np.float32), gt[j].astype(np.float32)) for j in js]
            for i in range(row_pred.shape[0])]


def reference_values(pool, pred: np.ndarray, gt: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """Per-pair DTW in pair_index order ((clip, column, sample), sample fastest)."""
    rows = pool.starmap(partial(_reference_row, gt=gt), zip(nb.astype(np.int64), pred))
    return np.concatenate([np.asarray(r, dtype=np.float64).T.reshape(-1) for r in rows])


def make_inputs(clips: int, k: int, frames: int, dims: int, neighbours: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal((clips, k, frames, dims)).astype(np.float32)
    gt = (rng.standard_normal((clips, frames, dims)) * 0.8 + 0.1).astype(np.float32)
    nb = np.zeros((clips, clips), dtype=bool)
    for c in range(clips):
        others = rng.permutation(np.delete(np.arange(clips), c))[:max(0, neighbours - 1)]
        nb[c, [c, *others]] = True
    return pred, gt, nb


def frdist_from_pairs(values: np.ndarray, ia: np.ndarray, n: int, k: int) -> float:
    best = np.full(n * k, np.inf)
    np.minimum.at(best, ia, values)
    return float(best.reshape(n, k).sum(1).mean())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff bench metrics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=16, help="speaker clips (default 16)")
    p.add_argument("--k", type=int, default=10, help="reactions per clip (default 10)")
    p.add_argument("--frames", type=int, default=750, help="frames per reaction (default 750)")
    p.add_argument("--dims", type=int, default=58, help="features per frame (default 58, 3DMM)")
    p.add_argument("--neighbours", type=int, default=4, help="appropriate reactions per clip (default 4)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="reference pool processes (default: all cores)")
    p.add_argument("--device", help="device for ours (default: cuda when available)")
    p.add_argument("--max-pairs-per-chunk", type=int, help="ours: pairs per DTW batch (default: memory budget)")
    p.add_argument("--backend", choices=["auto", "torch", "triton", "all"], default="all",
                   help="ours: DTW recursion backend; 'all' times every one this device has (default)")
    p.add_argument("--memory-budget-mib", type=int,
                   help="also time ours in bounded memory (the striped recursion MARS clips of 20,000 frames need) "
                        "at this many MiB of work space")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import tslearn
    except ImportError:
        print("reactdiff bench metrics: error: the reference needs tslearn (pip install tslearn)")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if min(args.clips, args.k, args.frames, args.dims, args.neighbours, args.workers) < 1:
        print("reactdiff bench metrics: error: sizes and --workers must be >= 1")
        return 2
    neighbours = min(args.neighbours, args.clips)
    device = torch.device(args.device) if args.device else default_device()
    pred, gt, nb = make_inputs(args.clips, args.k, args.frames, args.dims, neighbours, args.seed)
    ia, ib = (t.numpy() for t in pair_index(nb, args.k))
    pairs = len(ia)
    print(f"[bench metrics] torch {torch.__version__} ({torch.get_num_threads()} threads, {device}), tslearn "
          f"{tslearn.__version__} ({args.workers} workers), {os.cpu_count()} cores; {args.clips} clips x {args.k} "
          f"samples x {neighbours} neighbours = {pairs} DTW pairs of {args.frames} x {args.frames} frames x "
          f"{args.dims} dims")

    # reference first: its workers fork from a process that has not started torch's thread pool yet
    ctx = mp.get_context()
    t0 = time.perf_counter()
    with ctx.Pool(processes=args.workers) as pool:
        ref = reference_values(pool, pred, gt, nb)
        t1 = time.perf_counter()
        reference_values(pool, pred, gt, nb)
        t2 = time.perf_counter()
    ref_cold, ref_warm = t1 - t0, t2 - t1

    def ours_run(backend):
        out = dtw_indexed(pred.reshape(-1, args.frames, args.dims), gt, ia, ib, device=device,
                          max_pairs_per_chunk=args.max_pairs_per_chunk, backend=backend)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out.numpy()

    rows = [(f"tslearn + Pool({args.workers}), cold", ref_cold), (f"tslearn + Pool({args.workers}), warm", ref_warm)]
    backends = [resolve_backend("auto", device)] if args.backend == "auto" else [args.backend]
    if args.backend == "all":
        backends = ["torch", "triton"] if device.type == "cuda" and dtw_triton.available() else ["torch"]
    timings = {}
    for backend in backends:  # the last one listed is the default, reported as the speed-up
        t0 = time.perf_counter()
        ours = ours_run(backend)
        t1 = time.perf_counter()
        ours_run(backend)
        t2 = time.perf_counter()
        timings[backend] = (t1 - t0, t2 - t1)
        rows += [(f"ours ({backend}, {device.type}), cold", t1 - t0),
                 (f"ours ({backend}, {device.type}), warm", t2 - t1)]
    ours_cold, ours_warm = timings[backends[-1]]
    if args.memory_budget_mib:
        budget = args.memory_budget_mib << 20
        t0 = time.perf_counter()
        striped = dtw_indexed(pred.reshape(-1, args.frames, args.dims), gt, ia, ib, device=device,
                              memory_budget=budget, backend="torch").numpy()
        secs = time.perf_counter() - t0
        rows.append((f"ours (striped, {args.memory_budget_mib} MiB)", secs))
        print(f"striped vs whole-matrix: max relative difference "
              f"{(np.abs(striped - ours) / np.maximum(np.abs(ours), 1e-300)).max():.2e}; "
              f"{secs / ours_warm:.2f}x the whole-matrix time")
    print(f"{'method':<32} {'seconds':>9} {'pairs/s':>10}")
    for name, secs in rows:
        print(f"{name:<32} {secs:>9.3f} {pairs / secs:>10.1f}")
    rel = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300)
    print(f"speed-up ({backends[-1]}): {ref_warm / ours_warm:.1f}x warm, {ref_cold / ours_cold:.1f}x cold")
    print(f"max relative difference over {pairs} pairs: {rel.max():.2e}")
    n, k = args.clips, args.k
    print(f"FRDist (react2024 convention): ours {frdist_from_pairs(ours, ia, n, k):.6f}, "
          f"reference {frdist_from_pairs(ref, ia, n, k):.6f}")
    return 0
