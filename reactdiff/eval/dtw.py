"""Batched dynamic time warping in torch: many pairs at once, one tensor op per anti-diagonal.

Definition (tslearn.metrics.dtw, no global constraint): with the squared Euclidean frame cost
c(i, j) = ||x_i - y_j||^2 and the accumulated cost

    R(i, j) = c(i, j) + min(R(i-1, j), R(i, j-1), R(i-1, j-1)),   R(-1, -1) = 0, R(-1, j) = R(i, -1) = inf,

DTW(x, y) = sqrt(R(T1-1, T2-1)): the square root of the smallest summed *squared* cost over warping paths (not the
sum of Euclidean distances). tslearn casts its inputs to float64; so do we.

Layout: the pairs of a chunk are the innermost (contiguous) dimension of the cost tensor, (T1, T2, B), so that
anti-diagonal d, the cells (i, d - i), is a strided view of contiguous B-vectors: every step of the recursion is a
few elementwise ops on an (n_d, B) slab, and cells of one diagonal depend only on the two previous diagonals.
The cost matrices come from a matrix product (|x|^2 + |y|^2 - 2 x.y, inputs centred on the mean of y first, which
keeps the cancellation error small), computed in row blocks that are transposed into the pair-innermost layout while
they are still in cache. Entries below the product's rounding level (32 eps x the pair's largest squared norms)
are set to 0, so identical frames cost exactly 0.

Backends for the recursion: "torch" (the loop below, one Python step per diagonal: right on CPU, launch-bound on a
GPU) and "triton" (dtw_triton.py: the whole recursion in one kernel; what "auto" picks for CUDA tensors). Both do the
same float64 operations and give identical values.
"""
from __future__ import annotations

import numpy as np
import torch

from . import dtw_triton

_ROW_BLOCK = 32  # cost-matrix rows computed (and transposed) per matrix product
_TOL = 32 * torch.finfo(torch.float64).eps  # per pair, costs below _TOL*(max|x|^2 + max|y|^2) are rounding noise


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _budget(device: torch.device, memory_budget: int | None) -> int:
    """Bytes of work space: given, or 512 MiB on CPU, a quarter of free GPU memory up to 8 GiB."""
    if memory_budget is not None:
        return memory_budget
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return min(free // 4, 8 << 30)
    return 512 << 20


def _pair_bytes(t1: int, t2: int, d: int) -> int:
    return 8 * (t1 * t2 + min(_ROW_BLOCK, t1) * t2 * 2 + 3 * (t1 + t2) * (d + 2) + 4 * t1)


def fits_whole(t1: int, t2: int, d: int, device: torch.device, memory_budget: int | None = None) -> bool:
    """Whether one pair's whole cost matrix fits the budget; longer sequences (MARS clips of 20,000 frames: 3.2 GB
    a pair) go through the striped recursion, whose memory is bounded by the budget whatever the length."""
    return _pair_bytes(t1, t2, d) <= _budget(device, memory_budget)


def pairs_per_chunk(t1: int, t2: int, d: int, device: torch.device, memory_budget: int | None = None) -> int:
    """How many pairs fit the memory budget (default: 512 MiB on CPU, a quarter of free GPU memory up to 8 GiB)."""
    memory_budget = _budget(device, memory_budget)
    return max(1, int(memory_budget // _pair_bytes(t1, t2, d)))


def _as_tensor(a) -> torch.Tensor:
    return a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))


def squared_cost(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None, *, device=None,
                 pairs_per_block: int | None = None) -> torch.Tensor:
    """(B, T1, D), (B, T2, D) -> squared frame distances, float64, in the (T1, T2, B) layout (contiguous).

    Works through `pairs_per_block` pairs at a time (default 16 on CPU, where small temporaries stay in the heap and
    in cache, all of them on GPU) and _ROW_BLOCK rows of the cost matrix per matrix product.
    """
    b, t1, _ = x.shape
    t2 = y.shape[1]
    device = out.device if out is not None else (torch.device(device) if device is not None else x.device)
    if out is None:
        out = torch.empty(t1, t2, b, dtype=torch.float64, device=device)
    sub = pairs_per_block or (b if device.type == "cuda" else 16)
    rows = min(_ROW_BLOCK, t1)
    block = torch.empty(min(sub, b), rows, t2, dtype=torch.float64, device=device)
    for s in range(0, b, sub):
        e = min(s + sub, b)
        xs = x[s:e].to(device=device, dtype=torch.float64)
        ys = y[s:e].to(device=device, dtype=torch.float64)
        off = ys.mean(dim=1, keepdim=True)
        xs, ys = xs - off, ys - off
        xn, yn = (xs * xs).sum(-1), (ys * ys).sum(-1)  # (P, T1), (P, T2)
        xa = torch.cat([xs, torch.ones_like(xn)[..., None], xn[..., None]], dim=-1)  # x.(-2y) + |y|^2 + |x|^2
        ya = torch.cat([-2 * ys, yn[..., None], torch.ones_like(yn)[..., None]], dim=-1).transpose(1, 2)
        noise = ((xn.amax(1) + yn.amax(1)) * _TOL)[:, None, None]  # also clamps negative rounding results
        for i in range(0, t1, rows):
            j = min(i + rows, t1)
            g = torch.bmm(xa[:, i:j], ya, out=block[:e - s, :j - i])  # (P, rows, T2)
            g.masked_fill_(g <= noise, 0.0)
            out[i:j, :, s:e].copy_(g.permute(1, 2, 0))  # transposed while the block is in cache
    return out


BACKENDS = ("auto", "torch", "triton")


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"dtw: backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and dtw_triton.available() else "torch"
    return backend


def accumulated_cost(cost: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """R(T1-1, T2-1) for every pair of a (T1, T2, B) cost tensor: (B,) tensor."""
    if resolve_backend(backend, cost.device) == "triton":
        return dtw_triton.accumulated_cost(cost)
    return _accumulated_cost_torch(cost)


def _accumulated_cost_torch(cost: torch.Tensor) -> torch.Tensor:
    """The recursion by anti-diagonals, a few tensor ops on an (n_d, B) slab per diagonal."""
    t1, t2, b = cost.shape
    if not cost.is_contiguous():
        cost = cost.contiguous()
    inf = float("inf")
    # prev1[i + 1] = R on diagonal d-1 at row i, prev2 the same for d-2; index 0 is an inf guard (row -1)
    prev1 = cost.new_full((t1 + 1, b), inf)
    prev2 = cost.new_full((t1 + 1, b), inf)
    best = cost.new_empty(t1, b)
    prev1[1] = cost[0, 0]
    for d in range(1, t1 + t2 - 1):
        i0, i1 = max(0, d - t2 + 1), min(d, t1 - 1)
        n = i1 - i0 + 1
        c = cost.as_strided((n, b), ((t2 - 1) * b, 1), cost.storage_offset() + (i0 * (t2 - 1) + d) * b)
        m = best[:n]
        torch.minimum(prev1[i0:i1 + 1], prev1[i0 + 1:i1 + 2], out=m)  # (i-1, j) and (i, j-1)
        torch.minimum(m, prev2[i0:i1 + 1], out=m)  # (i-1, j-1)
        torch.add(m, c, out=prev2[i0 + 1:i1 + 2])  # prev2 becomes diagonal d
        if i0 > 0:
            prev2[i0] = inf  # row i0-1 is off diagonal d: guard it (older values linger further below, never read)
        prev1, prev2 = prev2, prev1
    return prev1[t1].clone()


def _stripe_torch(cost: torch.Tensor, top: torch.Tensor | None) -> torch.Tensor:
    """Rows i0..i0+H-1 of the recursion from a (H, T2, B) cost stripe and R of the row above it (`top`, (T2, B);
    None for the first stripe) -> R of the stripe's last row, (T2, B). The anti-diagonal walk of
    _accumulated_cost_torch, with index 0 of its diagonals holding row i0 - 1 from `top`."""
    h, t2, b = cost.shape
    inf = float("inf")
    prev1, prev2 = cost.new_full((h + 1, b), inf), cost.new_full((h + 1, b), inf)
    best, bottom = cost.new_empty(h, b), cost.new_empty(t2, b)
    for d in range(h + t2 - 1):
        i0, i1 = max(0, d - t2 + 1), min(d, h - 1)
        n = i1 - i0 + 1
        if i0 == 0:  # row i0 - 1 at columns d (above) and d - 1 (diagonal); R(-1, -1) = 0 starts the first stripe
            prev1[0] = top[d] if top is not None and d < t2 else inf
            prev2[0] = (top[d - 1] if top is not None else inf) if d > 0 else (0.0 if top is None else inf)
        c = cost.as_strided((n, b), ((t2 - 1) * b, 1), cost.storage_offset() + (i0 * (t2 - 1) + d) * b)
        m = best[:n]
        torch.minimum(prev1[i0:i1 + 1], prev1[i0 + 1:i1 + 2], out=m)
        torch.minimum(m, prev2[i0:i1 + 1], out=m)
        torch.add(m, c, out=prev2[i0 + 1:i1 + 2])
        if i0 > 0:
            prev2[i0] = inf
        prev1, prev2 = prev2, prev1
        if d >= h - 1:
            bottom[d - h + 1] = prev1[h]
    return bottom


def _dtw_striped(a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor, device: torch.device,
                 budget: int) -> torch.Tensor:
    """DTW(a[ia[p]], b[ib[p]]) in memory bounded by `budget`: the cost matrix is made and consumed
    a stripe of rows at a time (same values as the whole-matrix path up to the zeroing of rounding noise, which
    is judged per stripe). -> (P,) float64 on the CPU."""
    p, t1, t2 = ia.numel(), a.shape[1], b.shape[1]
    per_row = 8 * t2 * 3  # a stripe row, and the row block squared_cost builds it from
    pairs = max(1, min(p, budget // (per_row * 256)))  # stripes of >= 256 rows where the budget allows
    rows = max(1, min(t1, budget // (per_row * pairs)))
    out = torch.empty(p, dtype=torch.float64)
    for s in range(0, p, pairs):
        xs, ys = a[ia[s:s + pairs]], b[ib[s:s + pairs]]
        top = None
        for i in range(0, t1, rows):
            top = _stripe_torch(squared_cost(xs[:, i:i + rows], ys, device=device), top)
        out[s:s + pairs] = top[-1].sqrt().cpu()
    return out


def dtw_indexed(a, b, ia, ib, *, device=None, max_pairs_per_chunk: int | None = None,
                memory_budget: int | None = None, backend: str = "auto") -> torch.Tensor:
    """DTW(a[ia[p]], b[ib[p]]) for every p, as tslearn.metrics.dtw defines it, in float64.

    a (Na, T1, D), b (Nb, T2, D); ia, ib (P,) integer indices. Pairs are processed in chunks of at most
    `max_pairs_per_chunk` (default: what `memory_budget` bytes hold). `backend`: see the module docstring.
    Returns a (P,) float64 tensor on the CPU.
    """
    device = torch.device(device) if device is not None else default_device()
    backend = resolve_backend(backend, device)
    a, b = _as_tensor(a), _as_tensor(b)  # kept where and as they are; chunks go to `device` as float64
    if a.ndim != 3 or b.ndim != 3 or a.shape[-1] != b.shape[-1]:
        raise ValueError(f"dtw: expected (N, T, D) sequences with the same D; got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    ia = _as_tensor(ia).to(dtype=torch.long, device=a.device).reshape(-1)
    ib = _as_tensor(ib).to(dtype=torch.long, device=b.device).reshape(-1)
    if ia.shape != ib.shape:
        raise ValueError(f"dtw: ia and ib must have the same length; got {ia.numel()} and {ib.numel()}")
    t1, t2, d = a.shape[1], b.shape[1], a.shape[2]
    if t1 == 0 or t2 == 0:
        raise ValueError("dtw: sequences must have at least one frame")
    for arr, name in ((a, "a"), (b, "b")):
        if arr.is_floating_point() and not bool(torch.isfinite(arr).all()):
            raise ValueError(f"dtw: {name} contains NaN/inf values (variable-length sequences are not supported)")
    if max_pairs_per_chunk is not None and max_pairs_per_chunk < 1:
        raise ValueError(f"dtw: max_pairs_per_chunk must be >= 1; got {max_pairs_per_chunk}")
    if device.type == "cuda":  # the sequences are small next to the cost tensors: gather pairs on the GPU
        a, b = a.to(device), b.to(device)
        ia, ib = ia.to(device), ib.to(device)
    p = ia.numel()
    if not fits_whole(t1, t2, d, device, memory_budget):
        return _dtw_striped(a, b, ia, ib, device, _budget(device, memory_budget))
    chunk = min(max(p, 1), max_pairs_per_chunk or pairs_per_chunk(t1, t2, d, device, memory_budget))
    out = torch.empty(p, dtype=torch.float64)
    storage = torch.empty(t1 * t2 * chunk, dtype=torch.float64, device=device)  # one workspace for all chunks
    with torch.no_grad():
        for s in range(0, p, chunk):
            e = min(s + chunk, p)
            buf = storage[:t1 * t2 * (e - s)].view(t1, t2, e - s)
            cost = squared_cost(a[ia[s:e]], b[ib[s:e]], out=buf)  # gathered as stored, float64 block by block
            out[s:e] = accumulated_cost(cost, backend).sqrt().cpu()
    return out


def dtw_pairs(x, y, **kw) -> torch.Tensor:
    """DTW of pairs: x (P, T1, D) with y (P, T2, D) -> (P,); or one pair x (T1, D), y (T2, D) -> 0-d tensor."""
    x, y = _as_tensor(x), _as_tensor(y)
    single = x.ndim == 2
    if single:
        x, y = x[None], y[None]
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"dtw: x and y must hold the same number of pairs; got {x.shape[0]} and {y.shape[0]}")
    idx = torch.arange(x.shape[0])
    r = dtw_indexed(x, y, idx, idx, **kw)
    return r[0] if single else r
