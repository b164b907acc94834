"""Read one person's clip from the raw REACT layout, checking every modality; bad input raises ClipRejected."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from PIL import Image

from . import frame_layout as fv
from .layout import ClipPath

AUDIO_TOLERANCE_FRAMES = 2  # a wav may be up to 80 ms shorter than the 3DMM track before we call it truncated


class ClipRejected(Exception):
    """A clip that cannot be used; `str(exc)` is the reason written to rejects.jsonl."""


def shown_path(path: Path, split_dir: Path) -> str:
    """A source file as rejects.jsonl names it: relative to the dataset root when it lies below it."""
    try:
        return str(path.relative_to(split_dir.parent))
    except ValueError:
        return str(path)


def check_exists(clip: ClipPath, split_dir: Path) -> None:
    """A pair-list row that points nowhere: none of the clip's modality files exist."""
    candidates = [clip.fv(split_dir), clip.audio(split_dir), clip.emotion(split_dir),
                  clip.video_frames(split_dir), clip.video_mp4(split_dir)]
    if not any(p.exists() for p in candidates):
        raise ClipRejected(f"pair list points nowhere: no file of {clip.rel} in any modality folder of {split_dir}")


def load_track(path: Path, dim: int, what: str, shown: str) -> np.ndarray:
    """A (T, dim) float track from an npy file, the exact stored values; (T,1,dim) and (1,T,dim) are accepted.
    `shown` is the path as rejects.jsonl names it."""
    if not path.is_file():
        raise ClipRejected(f"missing {what} file {shown}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a reject, with the reason
        raise ClipRejected(f"unreadable {what} file {shown}: {exc}") from None
    if arr.ndim == 3 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] < 2:
        raise ClipRejected(f"{what} file {shown} has shape {tuple(np.shape(arr))}; "
                           f"expected (T,{dim}), (T,1,{dim}) or (1,T,{dim})")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ClipRejected(f"{what} file {shown} has dtype {arr.dtype}; expected float32")
    if not np.isfinite(arr).all():
        raise ClipRejected(f"{what} file {shown} contains NaN or inf")
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_fv(clip: ClipPath, split_dir: Path) -> np.ndarray:
    """3DMM track as (T, 58) float32, the exact stored values. Accepts (T,58), (T,1,58), (1,T,58)."""
    path = clip.fv(split_dir)
    return load_track(path, fv.FV_DIM, "3DMM", shown_path(path, split_dir))


def load_emotion(clip: ClipPath, split_dir: Path, frames: int) -> np.ndarray:
    """Emotion csv (header + one row per frame, 25 columns) as (T, 25) float32."""
    path = clip.emotion(split_dir)
    if not path.is_file():
        raise ClipRejected(f"missing emotion file {shown_path(path, split_dir)}")
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
        header, body = rows[0], rows[1:]
    except Exception as exc:  # noqa: BLE001
        raise ClipRejected(f"unreadable emotion file {shown_path(path, split_dir)}: {exc}") from None
    for i, r in enumerate([header] + body):
        if len(r) != fv.EMOTION_DIM:
            raise ClipRejected(f"emotion file {shown_path(path, split_dir)} line {i + 1} has {len(r)} columns; "
                               f"expected {fv.EMOTION_DIM} (15 AUs, valence, arousal, 8 expressions)")
    try:
        arr = np.asarray(body, dtype=np.float32)
    except ValueError as exc:
        raise ClipRejected(f"emotion file {shown_path(path, split_dir)} has a non-numeric value: {exc}") from None
    if arr.shape[0] != frames:
        raise ClipRejected(f"emotion file {shown_path(path, split_dir)} has {arr.shape[0]} rows; the 3DMM track has "
                           f"{frames} frames")
    if not np.isfinite(arr).all():
        raise ClipRejected(f"emotion file {shown_path(path, split_dir)} contains NaN or inf")
    return arr


def load_audio(clip: ClipPath, split_dir: Path, frames: int) -> tuple[np.ndarray, dict]:
    """Wav -> 16 kHz mono float32 (torchaudio resampling). Returns (audio, facts about the source)."""
    path = clip.audio(split_dir)
    return load_wav(path, shown_path(path, split_dir), frames, fv.FPS)


def load_wav(path: Path, shown: str, frames: int, fps: float) -> tuple[np.ndarray, dict]:
    """A wav that must cover `frames` frames at `fps` -> 16 kHz mono float32, and facts about the source."""
    if not path.is_file():
        raise ClipRejected(f"missing audio file {shown}")
    try:
        info = sf.info(str(path))
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001
        raise ClipRejected(f"unreadable audio file {shown}: {exc}") from None
    if data.shape[0] < info.frames:
        raise ClipRejected(f"truncated audio file {shown}: header says {info.frames} samples, "
                           f"file holds {data.shape[0]}")
    need = (frames - AUDIO_TOLERANCE_FRAMES) / fps
    if data.shape[0] / rate < need:
        raise ClipRejected(f"truncated audio file {shown}: {data.shape[0] / rate:.2f} s, "
                           f"the 3DMM track needs {frames / fps:.2f} s")
    if not np.isfinite(data).all():
        raise ClipRejected(f"audio file {shown} contains NaN or inf")
    mono = torch.from_numpy(data.mean(axis=1))
    if rate != fv.AUDIO_RATE:
        mono = AF.resample(mono, rate, fv.AUDIO_RATE)
    return mono.numpy().astype(np.float32), {"rate": int(rate), "channels": int(data.shape[1])}


def load_reference_frame(clip: ClipPath, split_dir: Path) -> tuple[bytes, str]:
    """First video frame as PNG bytes (copied from `<clip>/1.png`, or decoded from `<clip>.mp4`)."""
    folder, mp4 = clip.video_frames(split_dir), clip.video_mp4(split_dir)
    if (folder / "1.png").is_file():
        data = (folder / "1.png").read_bytes()
        try:
            Image.open(io.BytesIO(data)).verify()
        except Exception as exc:  # noqa: BLE001
            raise ClipRejected(f"unreadable video frame {shown_path(folder / '1.png', split_dir)}: {exc}") from None
        return data, "png"
    if mp4.is_file():
        return first_frame_png(mp4, shown_path(mp4, split_dir)), "mp4"
    raise ClipRejected(f"missing video: neither {shown_path(folder / '1.png', split_dir)} nor "
                       f"{shown_path(mp4, split_dir)}")


def first_frame_png(mp4: Path, shown: str) -> bytes:
    """The first frame of a video as PNG bytes."""
    import av  # PyAV: only needed for mp4 sources

    try:
        with av.open(str(mp4)) as container:
            image = next(container.decode(video=0)).to_image()
    except Exception as exc:  # noqa: BLE001
        raise ClipRejected(f"unreadable video {shown}: {exc}") from None
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
