"""Shard/sample partitioning over nodes, ranks and dataloader workers: parameter sweeps of the pure functions."""
import itertools

import pytest

from reactdiff.data.partition import shard_order, slot_bounds, slot_index, slot_segments
from reactdiff.data.plan import buffer_shuffle, slot_items

import numpy as np


def expand(segments):
    return [(shard, i) for shard, lo, hi in segments for i in range(lo, hi)]


@pytest.mark.parametrize("sizes", [[5], [3, 4, 5], [1] * 7, [10, 0, 3], [2, 9, 4, 4, 1, 6]])
@pytest.mark.parametrize("num_slots", [1, 2, 3, 4, 8, 13])
def test_eval_partition_covers_every_sample_once_in_order(sizes, num_slots):
    order = shard_order(len(sizes), seed=0, epoch=0, shuffle=False)
    got = [s for slot in range(num_slots) for s in expand(slot_segments(sizes, order, num_slots, slot, equal=False))]
    want = [(shard, i) for shard in range(len(sizes)) for i in range(sizes[shard])]
    assert got == want  # concatenating the slots in order gives the manifest order
    counts = [len(expand(slot_segments(sizes, order, num_slots, s, equal=False))) for s in range(num_slots)]
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("sizes", [[5], [3, 4, 5], [1] * 7, [2, 9, 4, 4, 1, 6]])
@pytest.mark.parametrize("nodes,ranks_per_node,workers", [(1, 1, 1), (1, 2, 2), (2, 2, 1), (2, 1, 3), (3, 2, 2)])
@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_train_partition_is_equal_disjoint_and_shuffled_per_epoch(sizes, nodes, ranks_per_node, workers, epoch):
    world = nodes * ranks_per_node
    order = shard_order(len(sizes), seed=3, epoch=epoch, shuffle=True)
    assert sorted(order) == list(range(len(sizes)))
    seen, per_slot = [], []
    for node, local, w in itertools.product(range(nodes), range(ranks_per_node), range(workers)):
        slot, num_slots = slot_index(node * ranks_per_node + local, world, w, workers)
        mine = expand(slot_segments(sizes, order, num_slots, slot, equal=True))
        seen += mine
        per_slot.append(len(mine))
    assert len(seen) == len(set(seen))  # nothing read twice
    assert len(set(per_slot)) == 1  # every rank runs the same number of steps
    assert len(seen) > sum(sizes) - world * workers  # only the remainder is dropped


def test_slots_are_distinct_and_dense():
    slots = {slot_index(r, 4, w, 3) for r in range(4) for w in range(3)}
    assert {s for s, _ in slots} == set(range(12)) and {n for _, n in slots} == {12}
    with pytest.raises(ValueError):
        slot_index(4, 4, 0, 1)
    with pytest.raises(ValueError):
        slot_bounds(10, 2, 2, True)


def test_shard_order_depends_on_seed_and_epoch_only():
    a = shard_order(50, 1, 2, True)
    assert a == shard_order(50, 1, 2, True)
    assert a != shard_order(50, 1, 3, True) and a != shard_order(50, 2, 2, True)


def test_buffer_shuffle_is_a_permutation_with_bounded_displacement():
    stream = list(range(1000))
    out = buffer_shuffle(stream, 16, np.random.default_rng(0))
    assert sorted(out) == stream and out != stream
    # an item can only come out after it has entered the buffer
    assert all(item <= pos + 16 for pos, item in enumerate(out))


def test_slot_items_cover_roles_and_windows():
    items = slot_items([3, 2], seed=0, epoch=0, slot=0, num_slots=1, train=True, windows_per_clip=3, shuffle_buffer=8)
    assert len(items) == 5 * 2 * 3 and len(set(items)) == len(items)
    assert {i[2] for i in items} == {0, 1}
    eval_items = slot_items([3, 2], seed=0, epoch=0, slot=0, num_slots=1, train=False, windows_per_clip=3,
                            shuffle_buffer=8)
    assert eval_items == [(s, i, r, 0) for s, n in ((0, 3), (1, 2)) for i in range(n) for r in (0, 1)]
