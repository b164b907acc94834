"""The training/eval reader: shards -> role-assigned windows -> batches, with an exact, resumable position.

    stream = BatchStream(cfg.data, rank=0, world_size=1, train=True)
    for batch in stream: ...                # batches of dicts of tensors (+ lists of keys/roles)
    state = stream.state_dict()             # {"epoch", "batch", ...}: save with the checkpoint
    stream.load_state_dict(state)           # a new stream continues with exactly the next batch

Slots (rank x dataloader worker) read contiguous stretches of the epoch's shard stream (see partition.py); the
DataLoader interleaves its workers round-robin, so batch b of an epoch comes from worker b % W. To resume at
batch b, worker w takes the part of worker (w + b) % W, and every batch lands where it would have.
"""
from __future__ import annotations

import enum
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .normalise import FaceNormaliser
from .partition import slot_index
from .plan import epoch_items, slot_batches, slot_items, taken_by_part
from .sample_format import PERSONS, decode_npy
from .shard_index import ShardIndex
from .windows import cut_item, decode_sample, memory_mean, needed_fields, window_start


def make_normaliser(cfg, folder: Path) -> FaceNormaliser:
    convention = cfg.normalisation.value
    if convention == "none":
        return FaceNormaliser.identity()
    mean = Path(cfg.mean_face) if cfg.mean_face else folder / "mean_face.npy"
    std = Path(cfg.std_face) if cfg.std_face else folder / "std_face.npy"
    return FaceNormaliser.from_files(mean, std, convention)


def collate(items: list[dict]) -> dict:
    batch = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        if isinstance(vals[0], np.ndarray):
            batch[k] = torch.from_numpy(np.stack(vals))
        elif isinstance(vals[0], (int, np.integer)):
            batch[k] = torch.tensor(vals, dtype=torch.long)
        else:
            batch[k] = vals
    return batch


class WindowDataset(IterableDataset):
    """Yields whole batches (collated inside the worker) so the batch order is fixed by the plan alone."""

    def __init__(self, cfg, rank: int = 0, world_size: int = 1, train: bool = True,
                 start: tuple[int, int] = (0, 0), normaliser: FaceNormaliser | None = None, memory: int = 0) -> None:
        """memory: the listener frames before each window whose mean the items carry (model.anchor_memory)."""
        self.cfg, self.rank, self.world_size, self.train = cfg, rank, world_size, train
        self.memory = int(memory)
        self.index = ShardIndex.open(cfg.shards)
        self.audio = cfg.audio.value
        if self.audio == "feat" and self.index.features is None:
            raise ValueError(f"data.audio=feat but the shards in {cfg.shards} have no audio features (made with "
                             f"--audio-features none); re-shard with --audio-features logmel, or set data.audio=raw")
        # a model's own statistics when given (an export must see what it was trained on), else the shard folder's
        self.normaliser = normaliser or make_normaliser(cfg, self.index.folder)
        self.workers = max(1, cfg.num_workers)
        self.window = cfg.window if train else cfg.eval_frames  # eval_frames 0: every clip whole, whatever its length
        self.whole_clips = not train and cfg.eval_frames == 0
        self.history = cfg.history if train else 0
        self.per_clip = cfg.windows_per_clip if train else 1
        self.start = start
        self.segments: list = []  # earlier layouts of the start epoch (a resume on other ranks/workers; plan.py)
        total = self.index.num_samples
        if train:
            share = total // (world_size * self.workers)
            self.batches_per_slot = slot_batches(share * 2 * self.per_clip, cfg.batch_size, train=True)
            if self.batches_per_slot == 0:
                raise ValueError(f"{cfg.shards} holds {total} dyadic samples: too few for {world_size} rank(s) x "
                                 f"{self.workers} worker(s) at batch size {cfg.batch_size} "
                                 f"({share} samples x 2 roles x {self.per_clip} windows each per slot)")

    @property
    def batches_per_epoch(self) -> int:
        """Batches this rank yields in the start epoch (training): a whole epoch, or what earlier layouts left."""
        if not self.segments:
            return self.batches_per_slot * self.workers
        items = self._items(self.start[0], 0, self.world_size * self.workers, self.segments)
        return slot_batches(len(items), self.cfg.batch_size, train=True) * self.workers

    def _items(self, epoch: int, slot: int, num_slots: int, segments=()):
        if not self.train:
            return slot_items(self.index.sizes, self.cfg.seed, epoch, slot, num_slots, False, 1, 0,
                              bounds=self.index.eval_bounds(slot, num_slots, self.whole_clips))
        return epoch_items(self.index.sizes, self.cfg.seed, epoch, slot, num_slots, self.per_clip,
                           self.cfg.shuffle_buffer, self.cfg.batch_size, segments)

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if info is None and self.workers > 1:
            raise RuntimeError("WindowDataset with num_workers > 1 must run inside a DataLoader with that many workers")
        epoch, batch = self.start
        part = (worker + batch) % self.workers  # see the module docstring
        slot, num_slots = slot_index(self.rank, self.world_size, part, self.workers)
        first = taken_by_part(batch, self.workers, part)  # batches of this part already consumed
        if info is not None:  # one thread per dataloader worker: the workers are the parallelism
            torch.set_num_threads(1)
        fields = needed_fields(self.audio, self.cfg.emotion)
        segments = self.segments
        while True:
            items = self._items(epoch, slot, num_slots, segments)
            bs = 1 if self.whole_clips else self.cfg.batch_size  # clips of different lengths do not stack
            n_batches = slot_batches(len(items), bs, self.train)
            last_use = {}
            for pos, (shard, sample, _, _) in enumerate(items):
                last_use[(shard, sample)] = pos
            cache: dict = {}
            for b in range(first, n_batches):
                out = []
                for pos in range(b * bs, min((b + 1) * bs, len(items))):
                    shard, sample, role, w = items[pos]
                    ref = (shard, sample)
                    if ref not in cache:
                        raw = self.index.read(shard, sample, fields)
                        cache[ref] = decode_sample(raw, self.normaliser, self.audio, self.cfg.emotion)
                    data = cache[ref]
                    frames = data["meta"]["frames"]
                    if self.train:
                        gid = self.index.first_id[shard] + sample
                        start = window_start(self.cfg.seed, epoch, gid, role, w, frames, self.window)
                    else:
                        start = 0
                        if frames < self.window:
                            raise ValueError(f"sample {data['meta']['key']} has {frames} frames; eval needs "
                                             f"data.eval_frames={self.window} (data.eval_frames=0: whole clips of "
                                             f"any length)")
                    out.append(cut_item(data, role, start, self.window or frames, self.history, self.memory))
                    if last_use[ref] == pos:
                        del cache[ref]
                yield collate(out)
            if not self.train:
                return
            epoch, first, segments = epoch + 1, 0, ()


def _as_recorded(value) -> str:
    """A data setting as fingerprints have always written it: enums as "Type.name" (Python's str() of a plain
    enum, before config.Choice made them print as their value), so older checkpoints still resume."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return str(value)


class BatchStream:
    """An endless (train) or one-pass (eval) iterator over batches, with `state_dict()` for exact resume."""

    def __init__(self, cfg, rank: int = 0, world_size: int = 1, train: bool = True,
                 normaliser: FaceNormaliser | None = None, memory: int = 0) -> None:
        self.cfg, self.rank, self.world_size, self.train = cfg, rank, world_size, train
        self.dataset = WindowDataset(cfg, rank, world_size, train, normaliser=normaliser, memory=memory)
        self.epoch, self.batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset.batches_per_epoch

    def fingerprint(self, legacy: bool = False) -> str:
        """What must not change between save and resume: data settings and the shard set (the number of ranks and
        workers may: see load_state_dict). legacy: the form older checkpoints hold, which included them."""
        from omegaconf import OmegaConf

        data = OmegaConf.to_container(self.cfg, resolve=True) if not isinstance(self.cfg, dict) else self.cfg
        # paths may change (shards copied to a node's local disk); contents and the plan's inputs may not
        keep = {k: _as_recorded(v) for k, v in data.items()
                if k not in ("num_workers", "shards", "mean_face", "std_face", "val_shards")}  # val: not the stream
        facts = {"cfg": keep, "sizes": self.dataset.index.sizes, "keys": self.dataset.index.keys}
        if legacy:
            facts = {**facts, "world_size": self.world_size, "workers": self.dataset.workers}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def layout(self) -> list[int]:
        return [self.world_size, self.dataset.workers]

    def state_dict(self) -> dict:
        """The same on every rank: the position is global (every rank has taken `batch` batches of this epoch)."""
        return {"epoch": self.epoch, "batch": self.batch, "layout": self.layout,
                "segments": [list(seg) for seg in self.dataset.segments], "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` left off, also on another number of ranks or workers: the rest of the epoch is
        then split among the new slots (plan.epoch_items), so no window of it is read twice."""
        legacy = "layout" not in state
        if state.get("fingerprint") != self.fingerprint(legacy=legacy):
            what = "world size or num_workers" if legacy else "or data config"
            raise ValueError(f"cannot resume the data position: the shards {what} differ from the run that saved it")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        segments = [tuple(int(v) for v in seg) for seg in state.get("segments", [])]
        old = [int(v) for v in state.get("layout", self.layout)]
        if old != self.layout and (self.batch or segments):  # a new layout part way through the epoch
            segments, self.batch = [*segments, (old[0], old[1], self.batch)], 0
        self.dataset.start, self.dataset.segments = (self.epoch, self.batch), segments
        if segments and self.batches_per_epoch == 0:  # too little left for the new layout: next epoch
            self.epoch, self.dataset.segments = self.epoch + 1, []

    def __iter__(self):
        self.dataset.start = (self.epoch, self.batch)
        workers = self.cfg.num_workers
        loader = DataLoader(self.dataset, batch_size=None, num_workers=workers,
                            persistent_workers=False, prefetch_factor=2 if workers else None)
        per_epoch = self.batches_per_epoch if self.train else None  # once per epoch, not per batch
        for batch in loader:
            if self.train:
                self.batch += 1
                if self.batch == per_epoch:
                    self.epoch, self.batch, self.dataset.segments = self.epoch + 1, 0, []
                    per_epoch = self.batches_per_epoch
            yield batch


def _listener_streams(cfg, clips: int, emotion: bool):
    """Each person's normalised 3DMM (+ emotion) stream (T, 58 [+25]) of the first `clips` dyadic samples."""
    index = ShardIndex.open(cfg.shards)
    normaliser = make_normaliser(cfg, index.folder)
    members = {"a.fv.npy", "b.fv.npy"} | ({"a.emotion.npy", "b.emotion.npy"} if emotion else set())
    taken = 0
    for shard, size in enumerate(index.sizes):
        for i in range(size):
            if taken >= clips:
                return
            raw = index.read(shard, i, lambda name: name in members)
            for person in PERSONS:
                x = normaliser.normalise(decode_npy(raw[f"{person}.fv.npy"]).astype(np.float32))
                if emotion:
                    x = np.concatenate([x, decode_npy(raw[f"{person}.emotion.npy"]).astype(np.float32)], axis=-1)
                yield x
            taken += 1


def listener_windows(cfg, window: int, clips: int = 64, emotion: bool = False, relative: bool = False) -> np.ndarray:
    """(N, window, 58 [+25]) normalised 3DMM windows (stride window / 2) of both persons of the first `clips`
    dyadic samples of the shards: the same numbers on every rank (e.g. for the model's noise spectrum).
    relative=True: each window minus the frame before it (0 for a window at the clip start)."""
    out = []
    for x in _listener_streams(cfg, clips, emotion):
        for s in range(0, len(x) - window + 1, max(1, window // 2)):
            out.append(x[s:s + window] - (x[s - 1] if relative and s > 0 else 0))
    if not out:
        raise ValueError(f"{cfg.shards}: no clip of at least {window} frames to measure the listener spectrum from")
    return np.stack(out)


def regression_windows(cfg, window: int, clips: int = 64, emotion: bool = False,
                       memory: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What the past regression is fitted on (model/past_regression.py), from the windows of `listener_windows`
    one frame longer: the frame before each window (N, D), the window (N, window, D) and, with memory > 0, the mean
    of the `memory` frames before it (N, D; the last frame included)."""
    last, windows, means = [], [], []
    for x in _listener_streams(cfg, clips, emotion):
        for s in range(0, len(x) - window, max(1, (window + 1) // 2)):
            last.append(x[s])
            windows.append(x[s + 1:s + 1 + window])
            if memory:
                means.append(memory_mean(x, s + 1, memory))
    if not windows:
        raise ValueError(f"{cfg.shards}: no clip of at least {window + 1} frames to fit the past regression on")
    return np.stack(last), np.stack(windows), np.stack(means) if memory else None
