"""Where generated reactions go: one npy per speaker role sample, named by its neighbour-matrix row, + manifest.

    out/reactions/00012.npy          (K, T, 58) float32 raw (de-normalised) 3DMM, reaction k = row k
    out/reactions/00012.emotion.npy  (K, T, 25) when the model predicts emotion
    out/manifest.json                rows, keys, roles, files, sha256; settings; complete flag
Each file is written atomically, so a rerun skips rows whose file exists and regenerates only the rest.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import atomic
from ..data.manifest import sha256_file
from ..data.sample_format import encode_npy

MANIFEST = "manifest.json"


def reaction_path(out: Path, row: int, emotion: bool = False) -> Path:
    return Path(out) / "reactions" / f"{row:05d}{'.emotion' if emotion else ''}.npy"


def write_reaction(out: Path, row: int, reactions: np.ndarray, emotion: np.ndarray | None = None) -> None:
    if emotion is not None:
        atomic.write_bytes(reaction_path(out, row, emotion=True), encode_npy(emotion.astype(np.float32)))
    atomic.write_bytes(reaction_path(out, row), encode_npy(reactions.astype(np.float32)))  # last: marks the row done


def write_manifest(out: Path, entries: list[dict], settings: dict, complete: bool) -> None:
    for e in entries:
        e.setdefault("sha256", sha256_file(reaction_path(out, e["row"])))
    atomic.write_json(Path(out) / MANIFEST, {"settings": settings, "entries": sorted(entries, key=lambda e: e["row"]),
                                             "complete": complete})


def load_manifest(out: Path) -> dict:
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected the output of `reactdiff sample`")
    return json.loads(path.read_text())
