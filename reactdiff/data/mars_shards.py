"""Pack a MARS split (REACT 2025 / 2026) into our shards: one sample per (session, stem) with both roles.

Person `a` is the speaker-role recording, `b` the listener-role one, so the shard format, the reader's roles and
the speaker rows (row k: a speaks, L + k: b speaks) are the REACT 2024 ones. What MARS adds is recorded: every
clip keeps its own length (`meta.frames`) at `meta.fps` = 30; `meta.emotion` is MARS's 25-d facial attributes (the
same columns as REACT's emotion); audio features are the dataset's own wav2vec2 rows (`--audio-features
provided`, aligned to the face frames here) or computed from the wav; EEG and personality travel when present;
and index.json holds each clip's identity and its seeded session-level appropriate set (no neighbour matrix).
Same guarantees as REACT sharding: deterministic bytes, atomic files, --resume, rejects with reasons.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np

from .. import __version__, atomic
from . import frame_layout as fv
from . import make_shards as ms
from . import mars_layout as M
from . import mars_source as S
from . import shard_folder as mf
from .audio_features import parse_spec
from .normalise import frame_moments, merge_moments
from .react_source import ClipRejected, first_frame_png
from .sample_format import PERSONS, decode_audio, encode_audio, encode_json, encode_npy, sample_key

ROLE_OF = dict(zip(PERSONS, M.ROLES))  # a: the speaker-role recording, b: the listener-role one
FEATURE_SPECS = "none | provided (the dataset's audio-features) | logmel | wav2vec2:/path/to/hf_folder"


@dataclasses.dataclass(frozen=True)
class MarsRow:
    row: int
    clip: M.MarsClip
    appropriate: dict  # {"a": stems whose listener recordings answer a, "b": stems whose speaker recordings answer b}
    personality: dict  # {"a": [5 traits], "b": [...]} where labelled


def _features(front, spec: str) -> dict | None:
    if front is not None:  # aligned to the clip's frames over its span (wav2vec2's align_frames): any fps
        return front.describe() | {"fps": M.FPS, "dtype": "float16"}
    if spec == "provided":
        return {"kind": "provided", "dim": S.FEATURE_DIM, "fps": M.FPS, "model": "the dataset's audio-features",
                "dtype": "float16"}
    return None


def _person(clip: M.MarsClip, split_dir: Path, role: str, frames: int, audio_format: str, front, spec: str,
            fields: dict, person: str) -> tuple[int, dict]:
    """Encode one role's members into `fields` -> (audio samples, facts about its source)."""
    audio, audio_info = S.load_audio(clip, split_dir, role, frames)
    fields[f"{person}.emotion.npy"] = encode_npy(S.load_attributes(clip, split_dir, role, frames))
    fields[f"{person}.audio.{audio_format}"] = encode_audio(audio, audio_format)
    audio = decode_audio(fields[f"{person}.audio.{audio_format}"])  # features of the stored (16-bit) audio
    facts = {"audio_rate": audio_info["rate"], "audio_channels": audio_info["channels"], "video": None}
    video = clip.path(split_dir, M.FACE_VIDEO_DIR, role)
    if video.is_file():  # the reference frame for PIRender; MARS users often skip the videos
        fields[f"{person}.ref.png"] = first_frame_png(video, f"{role}/{clip.key}.mp4")
        facts["video"] = "mp4"
    if front is not None:
        fields[f"{person}.feat.npy"] = encode_npy(front(audio, frames).astype(np.float16))  # at the clip's fps
    elif spec == "provided":
        feat, facts["features"] = S.load_features(clip, split_dir, role, frames)
        fields[f"{person}.feat.npy"] = encode_npy(feat)
    eeg = S.load_eeg(clip, split_dir, role)
    if eeg is not None:
        fields[f"{person}.eeg.npy"], fields[f"{person}.eeg_mask.npy"] = encode_npy(eeg[0]), encode_npy(eeg[1])
    return int(audio.shape[0]), facts


def process_mars_row(row: MarsRow, split_dir: Path, split: str, n_rows: int, audio_format: str) -> dict:
    """Read, check and encode both roles of one MARS clip -> {'key', 'fields', 'matrix_rows'} or {'reject'}."""
    clip, (front, spec) = row.clip, ms.frontend()
    fields, source, audio_samples = {}, {}, {}
    try:
        faces = {p: S.load_coefficients(clip, split_dir, role) for p, role in ROLE_OF.items()}
        frames = len(faces["a"])
        if len(faces["b"]) != frames:
            raise ClipRejected(f"coefficients differ in length: the speaker has {frames} frames, the listener "
                               f"{len(faces['b'])}")
        for person, role in ROLE_OF.items():
            fields[f"{person}.fv.npy"] = encode_npy(faces[person])
            audio_samples[person], source[person] = _person(clip, split_dir, role, frames, audio_format, front, spec,
                                                            fields, person)
    except ClipRejected as exc:
        return {"reject": {"row": row.row, "clip": clip.key, "reason": str(exc)}}
    key = sample_key(row.row, "MARS", clip.session, clip.stem)
    meta = {"key": key, "split": split, "layout": "mars", "site": "MARS", "session": clip.session, "clip": clip.stem,
            "persons": dict(ROLE_OF), "paths": {p: f"{r}/{clip.key}" for p, r in ROLE_OF.items()},
            "frames": frames, "fps": M.FPS, "audio_rate": fv.AUDIO_RATE, "audio_samples": audio_samples,
            "audio_format": audio_format, "csv_row": row.row, "pair_rows": n_rows,
            "matrix_rows": {"a": row.row, "b": n_rows + row.row}, "appropriate": row.appropriate,
            "personality": row.personality or None, "features": _features(front, spec),
            "source": source, "format_version": ms.FORMAT_VERSION}
    fields["meta.json"] = encode_json(meta)
    return {"key": key, "fields": fields, "matrix_rows": [row.row, n_rows + row.row], "frames": frames}


def _rows(root: Path, split: str, clips: list[M.MarsClip]) -> list[MarsRow]:
    sets = M.appropriate_sets(clips)
    traits = {p: S.load_personality(root / split, role) for p, role in ROLE_OF.items()}
    return [MarsRow(i, c, {"a": sets[(c.key, "speaker")], "b": sets[(c.key, "listener")]},
                    {p: traits[p][(c.session, c.stem)] for p in PERSONS if (c.session, c.stem) in traits[p]})
            for i, c in enumerate(clips)]


def _train_stats(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """mean_face / std_face over every frame of both roles of the train split's clips (population std)."""
    clips, _ = M.discover(root, "train")
    parts = []
    for c in clips:
        for role in M.ROLES:
            try:  # the same checks as sharding: a rejected track (NaN, wrong shape) never enters the statistics
                parts.append(frame_moments(S.load_coefficients(c, root / "train", role)))
            except ClipRejected:
                continue
    return merge_moments(parts)


def _stats_files(root: Path, stats_dir: Path | None, out: Path) -> dict:
    """mean_face.npy / std_face.npy next to the shards: copied from `stats_dir` (or the root) when there, else
    computed from the train split."""
    src = Path(stats_dir) if stats_dir else root
    if all((src / n).is_file() for n in mf.STATS_FILES):
        copied = {}
        for name in mf.STATS_FILES:
            data = (src / name).read_bytes()
            atomic.write_bytes(out / name, data)
            copied[name] = {"from": str(src / name), "sha256": mf.sha256_bytes(data)}
        return copied
    mean, std = _train_stats(root)
    made = {}
    for name, arr in zip(mf.STATS_FILES, (mean, std)):
        data = encode_npy(arr)
        atomic.write_bytes(out / name, data)
        made[name] = {"from": f"computed from {root / 'train'} (every frame of both roles)",
                      "sha256": mf.sha256_bytes(data)}
    return made


def make_mars_shards(root: str | Path, split: str, out: str | Path, *, workers: int = 1,
                     samples_per_shard: int = 64, audio_features: str = "none", audio_format: str = "flac",
                     resume: bool = False, overwrite: bool = False, limit: int | None = None,
                     stats_dir: str | Path | None = None, tool_args: dict | None = None,
                     progress: bool = True) -> dict:
    """Write the shards of one MARS split; returns the final index (with `totals`)."""
    t0 = time.time()
    root, out = Path(root), Path(out)
    ms.check_run_args(samples_per_shard, audio_format)
    if audio_features != "provided":
        parse_spec(audio_features)
    try:
        clips, orphans = M.discover(root, split)
    except M.MarsLayoutError as exc:
        raise ms.ShardingError(str(exc)) from None
    listing = hashlib.sha256("\n".join(c.key for c in clips).encode()).hexdigest()
    n_rows = len(clips)  # speaker rows refer to the whole split, even with --limit
    rows = _rows(root, split, clips)[:limit or None]
    settings = ms.ShardSettings(split=split, samples_per_shard=samples_per_shard, audio_features=audio_features,
                                audio_format=audio_format, pair_list_sha256=listing, rows=len(rows))
    index = ms._prepare_out(out, settings, resume, overwrite)
    index["side_files"] = _stats_files(root, Path(stats_dir) if stats_dir else None, out)
    index.update(tool=f"reactdiff {__version__} make_shards --layout mars", args=tool_args or {}, layout="mars",
                 source={"root": str(root), "clips": n_rows, "listing_sha256": listing, "orphans": orphans},
                 appropriate={"seed": M.APPROPRIATE_SEED, "extra": M.EXTRA_APPROPRIATE,
                              "rule": "the paired recording, then extra others of the same session and role"},
                 clips=[{"row": r.row, "session": r.clip.session, "stem": r.clip.stem} for r in rows])
    return ms.write_shards(out, split, rows, index, samples_per_shard, root / split, n_rows, audio_format,
                           audio_features, workers, progress, process_mars_row, extra_rejects=orphans, t0=t0)
