"""The ground truth of MARS evaluation (REACT 2025 / 2026), read from MARS shards: per speaker row, the speaker's
streams and its session-level appropriate reactions, each clip at its own length.

Row k < L is the speaker-role recording of clip k speaking (its listener-role partner is the true listener),
row L + k the listener-role recording speaking (REACT 2025 scores both directions, REACT 2026 the first only).
The appropriate set of a row is the one make_shards recorded (`meta.appropriate`: the paired stem, then 9 others
of the same session, seeded): the other-role recordings of those stems in the same session. A stem that is not in
the shards (a rejected clip, or one cut by --limit) is skipped and counted (`missing`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..data import mars_layout as M
from ..data.sample_format import PEERS, PERSONS, decode_json, decode_npy
from ..data.shard_index import ShardIndex

KINDS = {"attributes": "emotion", "3dmm": "fv"}  # what is scored -> the shard member holding it


@dataclasses.dataclass
class MarsRow:
    row: int
    key: str  # the shard sample
    direction: str  # "speaker->listener" (the speaker-role recording speaks) or "listener->speaker"
    speaker: dict  # kind -> (T, D) the speaking recording
    targets: dict  # kind -> list of (T_j, D): the appropriate reactions, the paired one first
    target_names: list[str]  # "listener/session3/<stem>" per target
    missing: int  # appropriate stems not in the shards
    clip: tuple[str, str] = ("", "")  # (session, stem) of the speaking recording's clip

    @property
    def frames(self) -> int:
        return len(self.speaker["3dmm"])


def is_mars_shards(shards: str | Path) -> bool:
    from ..data import shard_folder as mf

    return mf.load_index(Path(shards)).get("layout") == "mars"


def resolve_protocol(shards: str | Path, protocol: str | None) -> str:
    """The protocol to score `shards` with: as given (checked against the shards' layout), or the layout's
    default (react2025 for MARS, react2024 otherwise)."""
    mars = is_mars_shards(shards)
    protocol = protocol or ("react2025" if mars else "react2024")
    if mars != (protocol != "react2024"):
        raise ValueError(f"--protocol {protocol} does not fit {shards}, which holds "
                         f"{'MARS' if mars else 'REACT 2024'} clips (MARS: react2025 or react2026)")
    return protocol


def read_clips(index: ShardIndex) -> dict[tuple[str, str], dict]:
    """(session, stem) -> {"meta", "a.fv", "b.fv", "a.emotion", "b.emotion"} for every sample of the folder."""
    wanted = {"meta.json"} | {f"{p}.{m}.npy" for p in PERSONS for m in KINDS.values()}
    out = {}
    for shard, size in enumerate(index.sizes):
        for i in range(size):
            raw = index.read(shard, i, lambda name: name in wanted)
            meta = decode_json(raw["meta.json"])
            if meta.get("layout") != "mars":
                raise ValueError(f"{raw['__url__']}: sample {meta['key']} is not a MARS sample (layout "
                                 f"{meta.get('layout', 'react2024')!r}); the MARS protocols need MARS shards")
            arrays = {f"{p}.{m}": decode_npy(raw[f"{p}.{m}.npy"]).astype(np.float32) for p in PERSONS
                      for m in KINDS.values()}
            out[(meta["session"], meta["clip"])] = {"meta": meta, **arrays}
    return out


def load_mars_truth(shards: str | Path, protocol: str) -> list[MarsRow]:
    """The rows a protocol scores, in row order (react2025: both directions, react2026: speaker -> listener)."""
    if protocol not in M.PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: the MARS protocols are {', '.join(M.PROTOCOLS)}")
    clips = read_clips(ShardIndex.open(shards))
    speaking = M.PROTOCOLS[protocol]
    rows = []
    for (session, _), clip in clips.items():
        meta = clip["meta"]
        for spk, lis in PEERS.values():
            role = meta["persons"][spk]
            if role not in speaking:
                continue
            targets = {kind: [] for kind in KINDS}
            names, missing = [], 0
            for stem in meta["appropriate"][spk]:
                other = clips.get((session, stem))
                if other is None:
                    missing += 1
                    continue
                for kind, member in KINDS.items():
                    targets[kind].append(other[f"{lis}.{member}"])
                names.append(f"{meta['persons'][lis]}/{session}/{stem}")
            rows.append(MarsRow(int(meta["matrix_rows"][spk]), meta["key"], f"{role}->{M.other(role)}",
                                {kind: clip[f"{spk}.{member}"] for kind, member in KINDS.items()}, targets, names,
                                missing, (session, meta["clip"])))
    return sorted(rows, key=lambda r: r.row)


def align(target: np.ndarray, frames: int) -> np.ndarray:
    """A ground truth of another length brought to the prediction's `frames` by nearest-frame time stretching:
    frame t takes source frame floor((t + 0.5) L / frames). Values stay ones the data holds (binary AUs stay
    binary); a target of the right length is returned as it is. (The challenge's own evaluation aligns with a
    pretrained autoencoder that is not public code we can ship; this rule is ours and the report says so.)"""
    length = len(target)
    if length == frames:
        return target
    idx = np.minimum(((np.arange(frames) + 0.5) * length / frames).astype(np.int64), length - 1)
    return target[idx]
