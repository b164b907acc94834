"""DTW's accumulated-cost recursion as one Triton kernel: the GPU path of reactdiff.eval.dtw.

The torch path walks the anti-diagonals from Python, a few kernel launches per diagonal: on a GPU the 1,500
diagonals of a 750 x 750 problem are then launch-bound (~0.2 s for 640 pairs, whatever the batch). Here one program
owns BLOCK_P pairs and walks all their diagonals itself. A diagonal lives in registers, one row per lane; the only
value a row needs from another row is R on the previous diagonal one row up, which goes through a small per-program
scratch buffer in global memory (L1/L2 resident), double-buffered so that one barrier per diagonal orders the
writes before the reads. The value one row up on the diagonal before that is the same load, kept from the previous
iteration.

Same recursion, same float64 arithmetic, same order of operations as the torch path (min of the three, then + cost),
so both give identical results. Runs under TRITON_INTERPRET=1 on CPU tensors, which is how the tests check it
without a GPU.
"""
from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # triton ships with torch's Linux CUDA wheels; elsewhere the torch path is used
    triton = None


def available() -> bool:
    return triton is not None


if triton is not None:

    @triton.jit
    def _accumulated_cost_kernel(cost_ptr, out_ptr, scratch_ptr, T1, T2, B,
                                 BLOCK_I: tl.constexpr, BLOCK_P: tl.constexpr):
        pid = tl.program_id(0)
        rows = tl.arange(0, BLOCK_I)
        lanes = pid * BLOCK_P + tl.arange(0, BLOCK_P)
        lane_ok = lanes < B
        row_ok = rows < T1
        # this program's scratch: 2 slots x BLOCK_I rows x BLOCK_P pairs, row-major
        base = scratch_ptr + pid.to(tl.int64) * (2 * BLOCK_I * BLOCK_P)
        tile = rows[:, None] * BLOCK_P + tl.arange(0, BLOCK_P)[None, :]
        up_mask = (rows >= 1)[:, None] & (tl.arange(0, BLOCK_P) >= 0)[None, :]
        row_off = rows.to(tl.int64) * (T2 - 1)  # cell (i, d - i) sits at ((i * (T2 - 1) + d) * B + p)

        # diagonal 0: R(0, 0) = c(0, 0)
        c00 = tl.load(cost_ptr + lanes, mask=lane_ok, other=0.0)
        cur = tl.where((rows == 0)[:, None], c00[None, :], float("inf"))
        tl.store(base + tile, cur)
        tl.debug_barrier()
        diag_prev = tl.full((BLOCK_I, BLOCK_P), float("inf"), tl.float64)  # R(i-1, j-1): diagonal d-2, row i-1
        for d in range(1, T1 + T2 - 1):
            read = ((d - 1) % 2) * (BLOCK_I * BLOCK_P)
            write = (d % 2) * (BLOCK_I * BLOCK_P)
            up = tl.load(base + read + tile - BLOCK_P, mask=up_mask, other=float("inf"))  # R(i-1, j): diag d-1
            best = tl.minimum(tl.minimum(up, cur), diag_prev)  # cur: R(i, j-1), diagonal d-1, row i
            j = d - rows
            ok = row_ok & (j >= 0) & (j < T2)
            c = tl.load(cost_ptr + ((row_off + d) * B)[:, None] + lanes[None, :],
                        mask=ok[:, None] & lane_ok[None, :], other=0.0)
            new = tl.where(ok[:, None], best + c, float("inf"))
            tl.store(base + write + tile, new)
            tl.debug_barrier()
            diag_prev = up
            cur = new
        res = tl.sum(tl.where((rows == T1 - 1)[:, None], cur, 0.0), axis=0)
        tl.store(out_ptr + lanes, res, mask=lane_ok)


def accumulated_cost(cost: torch.Tensor, pairs_per_program: int = 2) -> torch.Tensor:
    """R(T1-1, T2-1) for every pair of a contiguous float64 (T1, T2, B) cost tensor: (B,) tensor."""
    if triton is None:
        raise RuntimeError("dtw: the triton backend needs the triton package (it ships with torch's CUDA wheels)")
    if cost.dtype != torch.float64 or cost.ndim != 3:
        raise ValueError(f"dtw: expected a float64 (T1, T2, B) cost tensor; got {cost.dtype} {tuple(cost.shape)}")
    cost = cost.contiguous()
    t1, t2, b = cost.shape
    block_i = triton.next_power_of_2(t1)
    block_p = pairs_per_program
    grid = (triton.cdiv(b, block_p),)
    out = torch.empty(b, dtype=torch.float64, device=cost.device)
    scratch = torch.empty(grid[0] * 2 * block_i * block_p, dtype=torch.float64, device=cost.device)
    # one lane per (row, pair) cell of a diagonal; more warps for long sequences keep registers per thread bounded
    warps = max(1, min(16, block_i * block_p // 256))
    _accumulated_cost_kernel[grid](cost, out, scratch, t1, t2, b, BLOCK_I=block_i, BLOCK_P=block_p,
                                   num_warps=warps)
    return out
