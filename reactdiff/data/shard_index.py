"""Open a shard folder for reading: its index.json, the shard files, and random access to one sample."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import shard_folder as mf
from .tario import read_sample_at


@dataclasses.dataclass
class ShardIndex:
    folder: Path
    files: list[Path]  # shards that hold samples, in manifest order
    sizes: list[int]  # samples per shard
    offsets: list[list[int]]  # byte offset of each sample's first tar header
    keys: list[list[str]]
    first_id: list[int]  # global sample id (manifest order) of each shard's first sample
    features: dict | None  # audio features stored in the shards, or None
    split: str
    recorded_rows: list[list[list[int]]] | None = None  # per shard, per sample: [row a speaks, row b speaks]
    sha256: list[str | None] | None = None  # per shard, as make_shards recorded it
    frames: list[int] | None = None  # per sample (manifest order), where make_shards recorded them

    @classmethod
    def open(cls, folder: str | Path) -> "ShardIndex":
        folder = Path(folder)
        index = mf.load_index(folder)
        if not index.get("complete"):
            raise ValueError(f"{folder / mf.INDEX_NAME} is from an unfinished run; finish it with "
                             f"`tools/make_shards.py ... --resume`")
        shards = [e for e in index["shards"] if e["file"] is not None]
        if not shards:
            raise ValueError(f"{folder / mf.INDEX_NAME} lists no samples")
        files = [folder / e["file"] for e in shards]
        for path, e in zip(files, shards):
            if not path.is_file() or path.stat().st_size != e["bytes"]:
                raise FileNotFoundError(f"shard {path} is missing or has the wrong size (index.json says "
                                        f"{e['bytes']} bytes)")
        sizes = [e["samples"] for e in shards]
        spec = index["settings"]["audio_features"]
        return cls(folder=folder, files=files, sizes=sizes, offsets=[e["offsets"] for e in shards],
                   keys=[e["keys"] for e in shards], first_id=[0] + list(np.cumsum(sizes)[:-1].tolist()),
                   features=None if spec == "none" else {"spec": spec}, split=index["settings"]["split"],
                   recorded_rows=[e["matrix_rows"] for e in shards] if all("matrix_rows" in e for e in shards)
                   else None, sha256=[e.get("sha256") for e in shards],
                   frames=[n for e in shards for n in e["frames"]] if all("frames" in e for e in shards) else None)

    @property
    def num_samples(self) -> int:
        return sum(self.sizes)

    def matrix_rows(self) -> list[tuple[int, int]]:
        """Every sample's neighbour-matrix rows (a speaks, b speaks), in manifest order: as index.json records them
        (make_shards writes them), or -- for indexes written before it did -- from each sample's meta.json."""
        if self.recorded_rows is not None:
            return [(int(a), int(b)) for shard in self.recorded_rows for a, b in shard]
        from .sample_format import decode_json

        per_shard = []
        for shard, size in enumerate(self.sizes):
            rows = []
            for i in range(size):
                meta = decode_json(self.read(shard, i, lambda name: name == "meta.json")["meta.json"])
                rows.append([int(meta["matrix_rows"]["a"]), int(meta["matrix_rows"]["b"])])
            per_shard.append(rows)
        self.recorded_rows = per_shard  # read once: every task's rows come from them
        return self.matrix_rows()

    def sample_frames(self) -> list[int]:
        """Frames of every sample, in manifest order (index.json records them; older indexes: from meta.json)."""
        if self.frames is None:
            from .sample_format import decode_json

            meta = lambda shard, i: decode_json(self.read(shard, i, lambda n: n == "meta.json")["meta.json"])  # noqa: E731
            self.frames = [int(meta(shard, i)["frames"]) for shard, size in enumerate(self.sizes) for i in range(size)]
        return self.frames

    def eval_bounds(self, task: int, tasks: int, whole_clips: bool) -> tuple[int, int]:
        """[start, stop) samples of eval slot `task`: equal counts, or (whole clips of any length) equal frames."""
        from .partition import frame_bounds, slot_bounds

        if whole_clips:
            return frame_bounds(self.sample_frames(), tasks, task)
        return slot_bounds(self.num_samples, tasks, task, equal=False)

    def task_rows(self, task: int, tasks: int, whole_clips: bool = False) -> list[int]:
        """The neighbour-matrix rows of eval task `task` of `tasks`: the reader's contiguous stretch of samples for
        that slot (eval_bounds), both directions of each."""
        lo, hi = self.eval_bounds(task, tasks, whole_clips)
        return [r for pair in self.matrix_rows()[lo:hi] for r in pair]

    def verify(self, shard: int) -> str | None:
        """What is wrong with a shard's bytes (None: they match the sha256 index.json records, or none is recorded)."""
        want = (self.sha256 or [None] * len(self.files))[shard]
        if want is None:
            return None
        got = mf.sha256_file(self.files[shard])
        if got != want:
            return (f"shard {self.files[shard]} is corrupt: its sha256 is {got[:16]}..., index.json says "
                    f"{want[:16]}... (copy it again, or re-shard with `tools/make_shards.py ... --resume`)")
        return None

    def read(self, shard: int, sample: int, fields=None) -> dict:
        """One sample's members as bytes (only the `fields` for which fields(name) is true, if given)."""
        with open(self.files[shard], "rb") as f:
            try:
                item = read_sample_at(f, self.offsets[shard][sample], self.keys[shard][sample], fields)
            except ValueError as exc:
                problem = self.verify(shard) or "index.json does not match this shard"
                raise ValueError(f"{self.files[shard]}: {exc}; {problem}") from None
        item["__url__"] = str(self.files[shard])
        return item
