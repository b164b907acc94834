"""Speaker clips of a shard folder for the live page: the list, and one role's raw streams as a client sends them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.sample_format import PEERS, decode_audio, decode_json, decode_npy
from ..data.shard_index import ShardIndex


class ClipCatalogue:
    def __init__(self, shards: str | Path) -> None:
        self.index = ShardIndex.open(shards)
        self.rows: dict[int, tuple[int, int, str, str]] = {}  # row -> (shard, sample, speaker, listener)
        self.entries: list[dict] = []
        frames, all_rows = self.index.sample_frames(), self.index.matrix_rows()
        gid = 0
        for shard, keys in enumerate(self.index.keys):
            for sample, key in enumerate(keys):
                rows = all_rows[gid]
                for (spk, lis), row in zip(PEERS.values(), rows):
                    self.rows[row] = (shard, sample, spk, lis)
                    self.entries.append({"row": row, "key": key, "role": f"{spk}->{lis}",
                                         "frames": int(frames[gid])})
                gid += 1
        self.entries.sort(key=lambda e: e["row"])

    def speaker(self, row: int) -> tuple[np.ndarray, np.ndarray, str, str]:
        """Row -> (raw 3DMM (T, 58) float32, 16 kHz audio float32, clip key, role)."""
        if row not in self.rows:
            raise KeyError(f"no speaker row {row} in {self.index.folder} (rows 0..{len(self.rows) - 1})")
        shard, sample, spk, lis = self.rows[row]
        raw = self.index.read(shard, sample)
        meta = decode_json(raw["meta.json"])
        audio = decode_audio(raw[f"{spk}.audio.{meta['audio_format']}"])
        return (decode_npy(raw[f"{spk}.fv.npy"]).astype(np.float32), audio.astype(np.float32), meta["key"],
                f"{spk}->{lis}")
