"""The REACT dataset layout on disk: modality folders, clip paths and the pair lists.

    root/{split}/{Video_files,Audio_files,Emotion,3D_FV_files}/{site}/{session}/{person}/{clip}.{ext}
    root/{split}.csv   index, speaker path, listener path (relative to the split folder, no extension)
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from ..atomic import atomic_open

SPLITS = ("train", "val", "test")
FV_DIR, AUDIO_DIR, EMOTION_DIR, VIDEO_DIR = "3D_FV_files", "Audio_files", "Emotion", "Video_files"
MODALITY_DIRS = (VIDEO_DIR, AUDIO_DIR, EMOTION_DIR, FV_DIR)
PAIR_LIST_HEADER = ("", "speaker_path", "listener_path")


@dataclasses.dataclass(frozen=True)
class ClipPath:
    """One person's clip, e.g. `NoXI/010_2016-03-25_Paris/Expert_video/1`."""

    site: str
    session: str
    person: str
    clip: str

    @classmethod
    def parse(cls, rel: str) -> "ClipPath":
        parts = rel.strip().strip("/").replace("\\", "/").split("/")
        if len(parts) != 4 or not all(parts):
            raise ValueError(f"expected a clip path 'site/session/person/clip', got {rel!r}")
        return cls(*parts)

    @property
    def rel(self) -> str:
        return f"{self.site}/{self.session}/{self.person}/{self.clip}"

    def fv(self, split_dir: Path) -> Path:
        return split_dir / FV_DIR / f"{self.rel}.npy"

    def audio(self, split_dir: Path) -> Path:
        return split_dir / AUDIO_DIR / f"{self.rel}.wav"

    def emotion(self, split_dir: Path) -> Path:
        return split_dir / EMOTION_DIR / f"{self.rel}.csv"

    def video_frames(self, split_dir: Path) -> Path:
        """PNG folder `<clip>/1.png..751.png` (the other form is `<clip>.mp4`)."""
        return split_dir / VIDEO_DIR / self.rel

    def video_mp4(self, split_dir: Path) -> Path:
        return split_dir / VIDEO_DIR / f"{self.rel}.mp4"


@dataclasses.dataclass(frozen=True)
class PairRow:
    """One row of a pair list: the clip of the person who speaks (a) and of the one who listens (b)."""

    row: int  # position in the list (0-based), the neighbour-matrix row of "a speaks to b"
    a: str
    b: str


def pair_list_path(root: Path, split: str) -> Path:
    return Path(root) / f"{split}.csv"


def read_pair_list(path: Path) -> list[PairRow]:
    """Read a REACT pair list (index column, speaker path, listener path; an optional header row)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair list {path} not found (expected REACT's {path.name}: index, speaker path, "
                                f"listener path)")
    rows: list[PairRow] = []
    with open(path, newline="") as f:
        for line_no, fields in enumerate(csv.reader(f), start=1):
            if not fields or all(not x.strip() for x in fields):
                continue
            if line_no == 1 and len(fields) == 3 and not fields[1].count("/"):
                continue  # header row
            if len(fields) != 3:
                raise ValueError(f"{path}:{line_no}: expected 3 columns (index, speaker path, listener path), "
                                 f"got {len(fields)}")
            rows.append(PairRow(row=len(rows), a=fields[1].strip(), b=fields[2].strip()))
    return rows


def write_pair_list(path: Path, pairs: list[tuple[str, str]]) -> None:
    """Write a pair list the way the REACT baselines ship it (pandas-style header and index column)."""
    with atomic_open(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(PAIR_LIST_HEADER)
        for i, (a, b) in enumerate(pairs):
            w.writerow((i, a, b))
