"""Where generated reactions go: one npy per speaker role sample, named by its neighbour-matrix row, + manifest.

    out/reactions/00012.npy          (K, T, 58) float32 raw (de-normalised) 3DMM, reaction k = row k
    out/reactions/00012.emotion.npy  (K, T, 25) when the model predicts emotion
    out/manifest.json                rows, keys, roles, files, sha256; settings; complete flag
    out/manifests/part-R-of-W.json   the same for one task of a fan-out (rank R of W); load_manifest merges them
Each file is written atomically, so a rerun skips rows whose file exists and regenerates only the rest.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import atomic
from ..digest import sha256_file
from ..data.sample_format import encode_npy

MANIFEST = "manifest.json"


def reaction_path(out: Path, row: int, emotion: bool = False) -> Path:
    return Path(out) / "reactions" / f"{row:05d}{'.emotion' if emotion else ''}.npy"


def write_reaction(out: Path, row: int, reactions: np.ndarray, emotion: np.ndarray | None = None) -> None:
    if emotion is not None:
        atomic.write_bytes(reaction_path(out, row, emotion=True), encode_npy(emotion.astype(np.float32)))
    atomic.write_bytes(reaction_path(out, row), encode_npy(reactions.astype(np.float32)))  # last: marks the row done


def part_name(rank: int, world_size: int) -> str:
    return f"manifests/part-{rank:04d}-of-{world_size:04d}.json"


def write_manifest(out: Path, entries: list[dict], settings: dict, complete: bool, part: str | None = None) -> None:
    for e in entries:
        e.setdefault("sha256", sha256_file(reaction_path(out, e["row"])))
    atomic.write_json(Path(out) / (part or MANIFEST), {"settings": settings, "complete": complete,
                                                       "entries": sorted(entries, key=lambda e: e["row"])})


def load_manifest(out: Path) -> dict:
    """The run's manifest, merged with the parts written by fan-out tasks; `complete` when every row is there."""
    out = Path(out)
    paths = ([out / MANIFEST] if (out / MANIFEST).is_file() else []) + sorted(out.glob("manifests/part-*.json"))
    if not paths:
        raise FileNotFoundError(f"{out / MANIFEST} not found: expected the output of `reactdiff sample`")
    merged, settings = {}, None
    for path in paths:
        doc = json.loads(path.read_text())
        if settings is not None and doc["settings"] != settings:
            raise ValueError(f"{path} was written with other settings than {paths[0]}; mixed outputs in {out}")
        settings = doc["settings"]
        merged.update({e["row"]: e for e in doc["entries"]})
    entries = [merged[r] for r in sorted(merged)]
    rows = settings.get("rows")
    return {"settings": settings, "entries": entries, "complete": rows is not None and len(entries) == rows}
