"""Validation loss (EDM2-style): the denoising loss on a fixed set of validation windows at a fixed grid of noise
levels with fixed noise, so that it is comparable across steps, runs, batch sizes and world sizes.

    vset = ValidationSet.from_shards(cfg, model.dim, model.density)
    per_level = vset.loss(eval_model, rank, world_size)   # (levels,) mean over all windows, the same on every rank

Window i is cut from (sample, role) i mod P of the validation shards at a start that is a pure function of i; its
noise is drawn from a generator seeded by (seed, i). Rank r scores windows r, r + R, ...; the sums are all-reduced.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from .. import dist
from ..data.reader import collate, make_normaliser
from ..data.shard_index import ShardIndex
from ..data.windows import cut_item, decode_sample, needed_fields, window_start

_VAL_EPOCH = 0x7A1  # window starts of validation windows: a stream of starts no training epoch draws


def default_val_shards(train_shards: str | Path) -> Path | None:
    """The sibling `val` folder of the training shards, when it holds shards."""
    sibling = Path(train_shards).parent / "val"
    return sibling if (sibling / "index.json").is_file() else None


def resolve_val_shards(data_cfg) -> Path | None:
    """data.val_shards: "" = the sibling `val` folder when it exists (else no validation), "none" = off."""
    value = str(data_cfg.val_shards)
    if value == "none":
        return None
    if not value:
        return default_val_shards(data_cfg.shards)
    path = Path(value)
    if not (path / "index.json").is_file():
        raise FileNotFoundError(f"data.val_shards={value}: no index.json there (a folder written by reactdiff shards)")
    return path


def sigma_grid(density, levels: int) -> torch.Tensor:
    """`levels` noise levels log-spaced between the 1st and 99th percentiles of the training density."""
    lo, hi = density.quantile(0.01), density.quantile(0.99)
    if levels == 1:
        return torch.tensor([math.sqrt(lo * hi)])
    return torch.logspace(math.log10(lo), math.log10(hi), levels, dtype=torch.float64).float()


@dataclasses.dataclass
class ValidationSet:
    batch: dict  # every window, collated on the CPU
    sigmas: torch.Tensor  # (L,)
    noise: torch.Tensor  # (N, L, W, dim) white noise, coloured by the model
    history: int
    shards: Path

    @property
    def windows(self) -> int:
        return int(self.noise.shape[0])

    @classmethod
    def from_shards(cls, cfg, dim: int, density, shards: Path, windows: int = 256, levels: int = 8,
                    seed: int = 0) -> "ValidationSet":
        d = cfg.data
        index = ShardIndex.open(shards)
        normaliser = make_normaliser(d, Path(d.shards))  # the training statistics, which the model was built with
        audio = d.audio.value
        pairs = [(s, i, role) for s, size in enumerate(index.sizes) for i in range(size) for role in (0, 1)]
        if not pairs:
            raise ValueError(f"{shards}: no samples to validate on")
        items, cache = [], {}
        for n in range(windows):
            shard, i, role = pairs[n % len(pairs)]
            if (shard, i) not in cache:
                cache[(shard, i)] = decode_sample(index.read(shard, i, needed_fields(audio, d.emotion)), normaliser,
                                                  audio, d.emotion)
            sample = cache[(shard, i)]
            frames = sample["meta"]["frames"]
            start = window_start(d.seed, _VAL_EPOCH, index.first_id[shard] + i, role, n // len(pairs), frames,
                                 d.window)
            items.append(cut_item(sample, role, start, d.window, d.history, cfg.model.anchor_memory))
        noise = torch.stack([torch.randn(levels, d.window, dim, generator=torch.Generator().manual_seed(
            seed * 1_000_003 + n)) for n in range(windows)])
        return cls(collate(items), sigma_grid(density, levels), noise, d.history, Path(shards))

    @torch.no_grad()
    def loss(self, model, rank: int = 0, world_size: int = 1, batch_size: int = 32) -> torch.Tensor:
        """(L,) the EDM loss per noise level, averaged over every window (all ranks' share, all-reduced)."""
        device = next(model.parameters()).device
        mine = list(range(rank, self.windows, world_size))
        levels = len(self.sigmas)
        total = torch.zeros(levels, dtype=torch.float64, device=device)
        per_call = max(1, batch_size // levels)  # windows per network call (each repeated at every level)
        for lo in range(0, len(mine), per_call):
            idx = torch.tensor(mine[lo:lo + per_call])
            rep = lambda v: v[idx].repeat_interleave(levels, 0).to(device)  # noqa: E731 - row w*L + j: level j
            batch = {k: rep(v) if isinstance(v, torch.Tensor) else [v[i] for i in idx.tolist() for _ in range(levels)]
                     for k, v in self.batch.items()}
            sigma = self.sigmas.repeat(len(idx)).to(device)
            noise = self.noise[idx].flatten(0, 1).to(device)
            per_sample, _ = model.denoising_loss(batch, self.history, sigma, noise)
            total += per_sample.double().view(len(idx), levels).sum(0)
        return dist.all_reduce_sum(total) / self.windows
