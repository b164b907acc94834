"""Which samples each (rank, dataloader worker) reads: pure functions, no I/O, no global state.

The shards of an epoch are put in a seeded order and their samples concatenated into one stream; each slot
(rank x worker) takes one contiguous stretch of it, so a slot touches few shards, every slot gets the same number
of samples in training (the remainder, different each epoch, is dropped so all ranks run the same number of
steps), and in eval every sample goes to exactly one slot, in stream order.
"""
from __future__ import annotations

import numpy as np


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """Shard visiting order of an epoch (seeded permutation in training, manifest order in eval)."""
    if not shuffle:
        return list(range(num_shards))
    return [int(i) for i in np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_shards)]


def slot_bounds(total: int, num_slots: int, slot: int, equal: bool) -> tuple[int, int]:
    """[start, stop) of `slot` in a stream of `total` samples: equal shares (remainder dropped) or all of it."""
    if not 0 <= slot < num_slots:
        raise ValueError(f"slot {slot} out of range for {num_slots} slots")
    if equal:
        share = total // num_slots
        return slot * share, (slot + 1) * share
    return slot * total // num_slots, (slot + 1) * total // num_slots


def frame_bounds(frames: list[int], num_slots: int, slot: int) -> tuple[int, int]:
    """[start, stop) of `slot` in a stream of samples of `frames` frames each: contiguous stretches of about equal
    frame totals (the cost of whole-clip evaluation grows with frames, not clips); every sample in exactly one."""
    if not 0 <= slot < num_slots:
        raise ValueError(f"slot {slot} out of range for {num_slots} slots")
    before = np.concatenate([[0], np.cumsum(frames, dtype=np.int64)[:-1]])  # frames ahead of each sample
    total = int(np.sum(frames, dtype=np.int64))
    cut = lambda s: int(np.searchsorted(before, s * total / num_slots, side="left")) if s < num_slots else len(frames)  # noqa: E731
    return cut(slot), cut(slot + 1)


def slot_segments(shard_sizes: list[int], order: list[int], num_slots: int, slot: int,
                  equal: bool, bounds: tuple[int, int] | None = None) -> list[tuple[int, int, int]]:
    """The slot's samples as (shard, first, stop) segments, in stream order (`bounds`: its [start, stop) given)."""
    start, stop = bounds or slot_bounds(sum(shard_sizes), num_slots, slot, equal)
    segments, pos = [], 0
    for shard in order:
        size = shard_sizes[shard]
        lo, hi = max(start, pos), min(stop, pos + size)
        if lo < hi:
            segments.append((shard, lo - pos, hi - pos))
        pos += size
        if pos >= stop:
            break
    return segments


def slot_index(rank: int, world_size: int, worker: int, num_workers: int) -> tuple[int, int]:
    """(slot, num_slots) for a global rank (nodes x ranks per node, flattened) and a dataloader worker."""
    workers = max(1, num_workers)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} out of range for world size {world_size}")
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} out of range for {workers} workers")
    return rank * workers + worker, world_size * workers
