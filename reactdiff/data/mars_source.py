"""Read one person's recording of a MARS clip (REACT 2025 / 2026), checking every modality; bad input raises
ClipRejected with the reason rejects.jsonl records.

Lengths: the clip's frame count T is its coefficients' rows; the facial attributes must have the same rows, the
wav must cover T frames at 30 fps, and the provided wav2vec2 features (one row per video frame) may differ from T
by at most FEATURE_TOLERANCE_FRAMES rows (a last partial frame), which are cut or repeated from the last row;
more is a reject, never a silent stretch. EEG (REACT 2026) keeps its own rate (about one row per second) with a
mask of the values that were present.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from . import frame_layout as fv
from . import mars_layout as M
from .react_source import ClipRejected, load_track, load_wav, shown_path

FEATURE_TOLERANCE_FRAMES = 2
FEATURE_DIM = 768  # the challenge's wav2vec2 audio-features
EEG_COLUMNS = ("TP9", "AF7", "AF8", "TP10", "Delta_TP9", "Theta_TP9", "Alpha_TP9", "Beta_TP9", "Gamma_TP9",
               "Delta_TP10", "Theta_TP10", "Alpha_TP10", "Beta_TP10", "Gamma_TP10")
TRAITS = ("Extraversion", "Agreeableness", "Conscientiousness", "Neuroticism", "Openness")


def load_coefficients(clip: M.MarsClip, split_dir: Path, role: str) -> np.ndarray:
    path = clip.path(split_dir, M.COEFFS_DIR, role)
    return load_track(path, fv.FV_DIM, "3DMM", shown_path(path, split_dir))


def load_attributes(clip: M.MarsClip, split_dir: Path, role: str, frames: int) -> np.ndarray:
    """(T, 25): 15 AU occurrences, valence, arousal, 8 expression probabilities; as many rows as the 3DMM."""
    path = clip.path(split_dir, M.ATTRS_DIR, role)
    arr = load_track(path, fv.EMOTION_DIM, "facial-attributes", shown_path(path, split_dir))
    if len(arr) != frames:
        raise ClipRejected(f"facial-attributes file {shown_path(path, split_dir)} has {len(arr)} rows; the 3DMM track "
                           f"has {frames} frames")
    return arr


def load_audio(clip: M.MarsClip, split_dir: Path, role: str, frames: int) -> tuple[np.ndarray, dict]:
    path = clip.path(split_dir, M.AUDIO_DIR, role)
    return load_wav(path, shown_path(path, split_dir), frames, M.FPS)


def load_features(clip: M.MarsClip, split_dir: Path, role: str, frames: int) -> tuple[np.ndarray, dict]:
    """The provided (T', 768) wav2vec2 features aligned to the T face frames -> ((T, 768) float16, facts)."""
    path = clip.path(split_dir, M.FEATS_DIR, role)
    arr = load_track(path, FEATURE_DIM, "audio-features", shown_path(path, split_dir))
    have = len(arr)
    if abs(have - frames) > FEATURE_TOLERANCE_FRAMES:
        raise ClipRejected(f"audio-features file {shown_path(path, split_dir)} has {have} rows; the 3DMM track has "
                           f"{frames} frames (one feature row per video frame, at most "
                           f"{FEATURE_TOLERANCE_FRAMES} apart)")
    if have >= frames:
        arr = arr[:frames]
    else:
        arr = np.concatenate([arr, np.repeat(arr[-1:], frames - have, axis=0)])
    return arr.astype(np.float16), {"rows": have, "aligned_to": frames}


def load_eeg(clip: M.MarsClip, split_dir: Path, role: str) -> tuple[np.ndarray, np.ndarray] | None:
    """REACT 2026's EEG csv -> ((R, 14) float32 values, (R, 14) uint8 mask of the values present), or None when
    the clip has none. Blank or unparsable cells are 0 with mask 0, as the challenge reads them."""
    path = clip.path(split_dir, M.EEG_DIR, role)
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ClipRejected(f"unreadable EEG file {shown_path(path, split_dir)}: {exc}") from None
    if not rows:
        raise ClipRejected(f"EEG file {shown_path(path, split_dir)} is empty")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in EEG_COLUMNS if c not in header]
    if missing:
        raise ClipRejected(f"EEG file {shown_path(path, split_dir)} lacks the columns {missing} (expected "
                           f"{', '.join(EEG_COLUMNS)})")
    cols = [header.index(c) for c in EEG_COLUMNS]
    values = np.zeros((len(rows) - 1, len(cols)), np.float32)
    mask = np.zeros_like(values, dtype=np.uint8)
    for i, row in enumerate(rows[1:]):
        for j, c in enumerate(cols):
            try:
                v = float(row[c]) if c < len(row) and row[c].strip() else float("nan")
            except ValueError:
                v = float("nan")
            if np.isfinite(v):
                values[i, j], mask[i, j] = v, 1
    return values, mask


def load_personality(split_dir: Path, role: str) -> dict[tuple[str, str], list[float]]:
    """REACT 2026's personality/<role>.csv -> (session, stem) -> the Big-Five scores as written (1..5); {} when
    the split has none."""
    path = Path(split_dir) / M.PERSONALITY_DIR / f"{role}.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = ("video_name", "session", *TRAITS)
        lost = [c for c in need if c not in (reader.fieldnames or [])]
        if lost:
            raise M.MarsLayoutError(f"{shown_path(path, split_dir)} lacks the columns {lost} (expected "
                                    f"{', '.join(need)})")
        out = {}
        for n, row in enumerate(reader, start=2):
            try:
                scores = [float(row[t]) for t in TRAITS]
                session, name = row["session"].strip(), row["video_name"].strip()
            except (TypeError, ValueError, AttributeError):
                raise M.MarsLayoutError(f"{shown_path(path, split_dir)} line {n}: a trait is missing or not a number, "
                                        f"or the row is short") from None
            session = session if session.startswith("session") else f"session{session}"
            out[(session, Path(name).stem)] = scores
        return out
