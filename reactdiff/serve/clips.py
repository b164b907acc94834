"""Speaker clips of a shard folder for the live page: the list, and one role's raw streams as a client sends them
(read by render.clips.SpeakerSource, the one reader of a role's speaker streams)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.sample_format import PEERS
from ..render.clips import SpeakerSource


class ClipCatalogue:
    def __init__(self, shards: str | Path) -> None:
        self.source = SpeakerSource(Path(shards))
        index = self.source.index
        self.rows: dict[int, tuple[str, str]] = {}  # row -> (clip key, role)
        self.entries: list[dict] = []
        frames, all_rows = index.sample_frames(), index.matrix_rows()
        keys = [key for shard in index.keys for key in shard]
        for gid, key in enumerate(keys):
            for (spk, lis), row in zip(PEERS.values(), all_rows[gid]):
                self.rows[row] = (key, f"{spk}->{lis}")
                self.entries.append({"row": row, "key": key, "role": f"{spk}->{lis}", "frames": int(frames[gid])})
        self.entries.sort(key=lambda e: e["row"])

    def speaker(self, row: int) -> tuple[np.ndarray, np.ndarray, str, str]:
        """Row -> (raw 3DMM (T, 58) float32, 16 kHz audio float32, clip key, role)."""
        if row not in self.rows:
            raise KeyError(f"no speaker row {row} in {self.source.index.folder} (rows 0..{len(self.rows) - 1})")
        key, role = self.rows[row]
        clip = self.source.clip(key, role)
        return clip["speaker"].astype(np.float32), clip["audio"].astype(np.float32), key, role
