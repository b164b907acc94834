"""The files of a shard folder and their names (index.json, rejects.jsonl, the face statistics, neighbours.npy).

`index.json` (like MosaicML streaming's index) says what each shard holds, its size and sha256. It is rewritten
atomically after every shard, so an interrupted run can be resumed from it; `complete` turns true only when the
last shard is in. (The sampler's `manifest.json` is another file: sampling/writer.py.)
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import atomic
from ..digest import sha256_bytes, sha256_file  # noqa: F401 (make_shards and the tests use them from here)

INDEX_NAME = "index.json"
REJECTS_NAME = "rejects.jsonl"
STATS_FILES = ("mean_face.npy", "std_face.npy")
NEIGHBOURS_NAME = "neighbours.npy"  # the split's neighbour_emotion_<split>.npy, copied by make_shards
FORMAT = "reactdiff-shards"


def shard_file_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def load_index(folder: str | Path) -> dict:
    """Read and sanity-check `folder/index.json`; errors name the file and what was expected."""
    path = Path(folder) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a shard folder written by tools/make_shards.py")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {index.get('format')!r}, expected {FORMAT!r}")
    return index


def write_index(folder: str | Path, index: dict) -> None:
    atomic.write_json(Path(folder) / INDEX_NAME, index)


def shard_is_intact(folder: Path, entry: dict) -> bool:
    """The shard file exists with the recorded size and sha256 (or holds no samples at all)."""
    if entry["file"] is None:
        return True
    path = folder / entry["file"]
    return path.is_file() and path.stat().st_size == entry["bytes"] and sha256_file(path) == entry["sha256"]


def totals(shards: list[dict]) -> dict:
    return {
        "shards": sum(1 for s in shards if s["file"] is not None),
        "samples": sum(s["samples"] for s in shards),
        "role_samples": 2 * sum(s["samples"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "rejects": sum(len(s["rejects"]) for s in shards),
    }


def shard_fps(folder) -> int:
    """Frames per second of a shard folder's clips: 30 for MARS (REACT 2025 / 2026), else REACT 2024's 25."""
    from . import frame_layout, mars_layout

    return mars_layout.FPS if load_index(Path(folder)).get("layout") == "mars" else frame_layout.FPS
