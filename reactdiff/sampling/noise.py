"""Per-sample seeded noise: every sample draws from its own CPU generator, so a sample's noise (and therefore its
output) is the same whether it is generated alone, in a batch of any size, or on any rank of any world size.

Noise is always drawn in float32 on the CPU and then cast and moved, so it is also identical across devices and
output dtypes (float64 runs see exactly the float32 values).
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["PerSampleNoiseSampler", "per_sample_generators", "randn_per_sample"]


def per_sample_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One seeded CPU torch.Generator per sample (seeds are non-negative ints below 2**64)."""
    gens = []
    for seed in seeds:
        seed = int(seed)
        if not 0 <= seed < 2 ** 64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        gens.append(torch.Generator(device="cpu").manual_seed(seed))
    return gens


def randn_per_sample(shape_per_sample: Sequence[int], generators: Sequence[torch.Generator],
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of shape (len(generators), *shape_per_sample); row i is drawn from generators[i] only."""
    if len(generators) == 0:
        raise ValueError("need at least one generator")
    shape = tuple(int(d) for d in shape_per_sample)
    rows = [torch.randn(shape, generator=g, dtype=torch.float32) for g in generators]
    return torch.stack(rows).to(device=device, dtype=dtype)


class PerSampleNoiseSampler:
    """Noise sampler for sample_dpmpp_2m_sde: each call draws the next noise of every sample from its own generator."""

    def __init__(self, generators: Sequence[torch.Generator], shape_per_sample: Sequence[int],
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.generators = list(generators)
        self.shape_per_sample = tuple(int(d) for d in shape_per_sample)
        self.device = device
        self.dtype = dtype

    def __call__(self, sigma=None, sigma_next=None) -> torch.Tensor:
        return randn_per_sample(self.shape_per_sample, self.generators, self.device, self.dtype)
