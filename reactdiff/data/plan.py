"""The exact sequence of items (sample, role, window) one slot yields in one epoch: pure, cheap, no data read.

Because the whole order is known before any byte is read, a resumed run can jump to item n directly, and the
loader knows when each sample is used for the last time (so it can drop it from memory).

A run resumed on a different number of ranks (or dataloader workers) part way through an epoch finishes that epoch
on what the earlier layouts left: `segments` lists them, [(world_size, workers, batches each rank took)], and the
items not yet taken are split into equal contiguous shares for the new slots (`epoch_items`). So no window of an
epoch is read twice and none is skipped beyond the remainder that equal shares drop; the next epoch starts afresh.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .partition import shard_order, slot_bounds, slot_index, slot_segments

ROLES = (0, 1)  # 0: person a speaks to b, 1: b speaks to a


def slot_items(sizes: list[int], seed: int, epoch: int, slot: int, num_slots: int, train: bool,
               windows_per_clip: int, shuffle_buffer: int, bounds: tuple[int, int] | None = None,
               ) -> list[tuple[int, int, int, int]]:
    """(shard, sample, role, window) in yield order for one slot and epoch (`bounds`: the slot's samples given, as
    whole-clip evaluation balances them by frames)."""
    order = shard_order(len(sizes), seed, epoch, shuffle=train)
    stream = [(shard, sample, role, w)
              for shard, lo, hi in slot_segments(sizes, order, num_slots, slot, equal=train, bounds=bounds)
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


Layout = tuple[int, int, int]  # (world_size, workers, batches each rank took)


def epoch_items(sizes: list[int], seed: int, epoch: int, slot: int, num_slots: int, windows_per_clip: int,
                shuffle_buffer: int, batch_size: int, segments: list[Layout] = ()) -> list[tuple[int, int, int, int]]:
    """Training items of `slot` for the rest of `epoch`, after the earlier layouts `segments` of that epoch."""
    if not segments:
        return slot_items(sizes, seed, epoch, slot, num_slots, True, windows_per_clip, shuffle_buffer)
    rest = _remaining(tuple(sizes), seed, epoch, windows_per_clip, shuffle_buffer, batch_size,
                      tuple(tuple(int(v) for v in seg) for seg in segments))
    lo, hi = slot_bounds(len(rest), num_slots, slot, equal=True)
    return list(rest[lo:hi])


def taken_by_part(batches: int, workers: int, part: int) -> int:
    """Batches of a rank's dataloader part `part` among the first `batches` (the loader interleaves its workers)."""
    return len(range(part, batches, workers))


@lru_cache(maxsize=32)
def _remaining(sizes: tuple, seed: int, epoch: int, windows_per_clip: int, shuffle_buffer: int, batch_size: int,
               segments: tuple) -> tuple:
    """The epoch's items that no layout of `segments` took, in slot order."""
    world, workers, batches = segments[-1]
    rest = []
    for rank in range(world):
        for part in range(workers):
            slot, num_slots = slot_index(rank, world, part, workers)
            items = epoch_items(list(sizes), seed, epoch, slot, num_slots, windows_per_clip, shuffle_buffer,
                                batch_size, segments[:-1])
            rest.extend(items[taken_by_part(batches, workers, part) * batch_size:])
    return tuple(rest)
