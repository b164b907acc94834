"""Ground truth for the REACT metrics, in the neighbour-matrix (mirrored) order, read straight from the shards.

Row k < L is "a speaks to b" of pair-list row k, row L + k is "b speaks to a"; column j is the true listener of
mirrored sample j. Values are the raw (de-normalised) 3DMM and emotion, frames 0..T-1.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..data import frame_layout as fv
from ..data import shard_folder as mf
from ..data.sample_format import PEERS, PERSONS, decode_json, decode_npy
from ..data.shard_index import ShardIndex


@dataclasses.dataclass
class GroundTruth:
    speaker_fv: np.ndarray  # (2L, T, 58) the speaker of each mirrored row
    listener_fv: np.ndarray  # (2L, T, 58) the true listener of each mirrored row (= column)
    speaker_emotion: np.ndarray  # (2L, T, 25)
    listener_emotion: np.ndarray  # (2L, T, 25)
    neighbours: np.ndarray  # (2L, 2L) binary
    rows: int  # 2L


def load_ground_truth(shards: str | Path, frames: int = 750, need_neighbours: bool = True) -> GroundTruth:
    """need_neighbours=False (a baseline pool, which is never scored against): without the matrix file the rows
    are the 2L mirrored samples and `neighbours` is the identity."""
    shards = Path(shards)
    index = ShardIndex.open(shards)
    neighbours_path = shards / mf.NEIGHBOURS_NAME
    if neighbours_path.is_file():
        neighbours = np.load(neighbours_path, allow_pickle=False).astype(bool)
    elif need_neighbours:
        raise FileNotFoundError(f"{neighbours_path} not found: make_shards copies neighbour_emotion_<split>.npy from "
                                f"the REACT root next to the shards; the metrics need it")
    else:
        neighbours = np.eye(2 * index.num_samples, dtype=bool)
    n = neighbours.shape[0]
    spk_fv, lis_fv = np.zeros((n, frames, fv.FV_DIM), np.float32), np.zeros((n, frames, fv.FV_DIM), np.float32)
    spk_em, lis_em = np.zeros((n, frames, 25), np.float32), np.zeros((n, frames, 25), np.float32)
    seen = np.zeros(n, bool)
    wanted = {"meta.json", "a.fv.npy", "b.fv.npy", "a.emotion.npy", "b.emotion.npy"}
    for shard, size in enumerate(index.sizes):
        for i in range(size):
            raw = index.read(shard, i, lambda name: name in wanted)
            meta = decode_json(raw["meta.json"])
            if meta["frames"] < frames:
                raise ValueError(f"{meta['key']} has {meta['frames']} frames; the metrics use {frames}")
            arr = {f"{p}.{m}": decode_npy(raw[f"{p}.{m}.npy"])[:frames] for p in PERSONS for m in ("fv", "emotion")}
            for spk, lis in PEERS.values():
                row = meta["matrix_rows"][spk]
                if row >= n:
                    raise ValueError(f"{meta['key']}: matrix row {row} outside the {n}x{n} neighbour matrix")
                spk_fv[row], lis_fv[row] = arr[f"{spk}.fv"], arr[f"{lis}.fv"]
                spk_em[row], lis_em[row] = arr[f"{spk}.emotion"], arr[f"{lis}.emotion"]
                seen[row] = True
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise ValueError(f"{shards} lacks {len(missing)} of the {n} mirrored rows (e.g. {missing[:5].tolist()}): "
                         f"rejected clips leave holes the neighbour matrix still counts")
    return GroundTruth(spk_fv, lis_fv, spk_em, lis_em, neighbours, n)
