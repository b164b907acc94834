"""The exact sequence of items (sample, role, window) one slot yields in one epoch: pure, cheap, no data read.

Because the whole order is known before any byte is read, a resumed run can jump to item n directly, and the
loader knows when each sample is used for the last time (so it can drop it from memory).
"""
from __future__ import annotations

import numpy as np

from .partition import shard_order, slot_segments

ROLES = (0, 1)  # 0: person a speaks to b, 1: b speaks to a


def slot_items(sizes: list[int], seed: int, epoch: int, slot: int, num_slots: int, train: bool,
               windows_per_clip: int, shuffle_buffer: int) -> list[tuple[int, int, int, int]]:
    """(shard, sample, role, window) in yield order for one slot and epoch."""
    order = shard_order(len(sizes), seed, epoch, shuffle=train)
    stream = [(shard, sample, role, w)
              for shard, lo, hi in slot_segments(sizes, order, num_slots, slot, equal=train)
              for sample in range(lo, hi)
              for role in ROLES
              for w in range(windows_per_clip if train else 1)]
    if not train or shuffle_buffer <= 1:
        return stream
    return buffer_shuffle(stream, shuffle_buffer, np.random.default_rng([seed, epoch, slot, 0xB0F]))


def buffer_shuffle(stream: list, size: int, rng: np.random.Generator) -> list:
    """A streaming shuffle buffer (as in WebDataset), simulated on item ids: same memory bound, known order."""
    out, buf = [], []
    for item in stream:
        if len(buf) < size:
            buf.append(item)
            continue
        i = int(rng.integers(len(buf)))
        out.append(buf[i])
        buf[i] = item
    rng.shuffle(buf)
    out.extend(buf)
    return out


def slot_batches(num_items_per_slot: int, batch_size: int, train: bool) -> int:
    """Batches a slot yields per epoch (training drops the last partial batch)."""
    full, rest = divmod(num_items_per_slot, batch_size)
    return full if train else full + (rest > 0)
