"""A synthetic dataset in the MARS layout (REACT 2025 / 2026): session folders, clips of variable length at 30 fps,
coefficients, facial attributes and wav per role, with the same planted speaker -> listener coupling as the REACT
generator (its behaviour code runs at 25 fps on the clip's duration; the tracks are then resampled to 30 fps, so
the coupling's lags hold in seconds).

    root/{split}/coefficients/{speaker,listener}/session<N>/Camera-<date>-<time>-<time>.npy   (T, 58) float32
    root/{split}/facial-attributes/{speaker,listener}/session<N>/<stem>.npy                   (T, 25) float32
    root/{split}/audio/{speaker,listener}/session<N>/<stem>.wav                                16 kHz mono
    root/synthetic.json                                                                       what was planted

No video is written (the MARS shards take the reference frame from video-face-crop when present).
"""
from __future__ import annotations

import dataclasses
import datetime
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...atomic import write_bytes, write_json
from .. import frame_layout as fv
from .. import mars_layout as M
from ..layout import SPLITS
from ..sample_format import encode_npy
from .seeding import rng_for
from .speech import SOURCE_AUDIO_RATE, wav_bytes
from .writer import ClipJob, simulate_clip

DEFAULT_SESSIONS = {"train": 3, "val": 1, "test": 2}
MARS_PERSONS = ("Participant_A", "Participant_B")
AUDIO_RATE = 16000


@dataclasses.dataclass(frozen=True)
class MarsClipJob:
    root: str
    split: str
    session: str  # "session<N>"
    stem: str
    frames: int  # at 30 fps
    seed: int
    templates: int  # script templates per split (a split with one acts out one script in every clip)

    def simulation(self) -> ClipJob:
        """The REACT generator's job that simulates this clip at 25 fps over its duration (one frame spare)."""
        frames25 = int(np.ceil(self.frames * fv.FPS / M.FPS)) + 1
        return ClipJob(self.root, self.split, "MARS", self.session, MARS_PERSONS, self.stem, frames25, self.seed,
                       templates=self.templates, video="none")


def resample(x: np.ndarray, frames: int, src_fps: float, dst_fps: float, nearest: bool = False) -> np.ndarray:
    """(T, D) at src_fps -> (frames, D) at dst_fps over the same time: linear interpolation (or the nearest frame,
    which keeps binary columns binary)."""
    t = np.arange(frames) * src_fps / dst_fps
    if nearest:
        return x[np.minimum(np.round(t).astype(np.int64), len(x) - 1)]
    lo = np.minimum(np.floor(t).astype(np.int64), len(x) - 1)
    hi = np.minimum(lo + 1, len(x) - 1)
    w = (t - lo)[:, None].astype(np.float32)
    return (x[lo] * (1 - w) + x[hi] * w).astype(np.float32)


def _audio_16k(audio: np.ndarray, src_rate: int, samples: int) -> np.ndarray:
    """Channel 0 at 16 kHz (linear interpolation), exactly `samples` long."""
    mono = audio[:, 0] if audio.ndim == 2 else audio
    t = np.arange(samples) * src_rate / AUDIO_RATE
    return np.interp(t, np.arange(len(mono)), mono).astype(np.float32)


def run_mars_clip(job: MarsClipJob) -> dict:
    """Simulate one clip at 25 fps for its duration, resample to 30 fps and write both roles' files."""
    people, facts = simulate_clip(job.simulation())
    first = facts["first"]  # the person recorded in the speaker folder
    split_dir = Path(job.root) / job.split
    written = 0
    samples = int(round(job.frames / M.FPS * AUDIO_RATE))
    for role, rec in zip(M.ROLES, (people[first], people[1 - first])):
        face = resample(rec.fv, job.frames, fv.FPS, M.FPS)
        attrs = resample(rec.emotion, job.frames, fv.FPS, M.FPS, nearest=True)
        clip = M.MarsClip(job.session, job.stem)
        blobs = {clip.path(split_dir, M.COEFFS_DIR, role): encode_npy(face),
                 clip.path(split_dir, M.ATTRS_DIR, role): encode_npy(attrs.astype(np.float32)),
                 clip.path(split_dir, M.AUDIO_DIR, role): wav_bytes(_audio_16k(rec.audio, SOURCE_AUDIO_RATE, samples),
                                                                    rate=AUDIO_RATE)}
        for path, data in blobs.items():
            write_bytes(path, data)
            written += len(data)
    lags = {role: facts["lags"][MARS_PERSONS[p]] for role, p in zip(M.ROLES, (first, 1 - first))}
    return {"split": job.split, "session": job.session, "stem": job.stem, "frames": job.frames, "lags": lags,
            "template": facts["template"], "bytes": written}


def plan_mars(root: str, seed: int, sessions: dict[str, int], clips_per_session: int, min_frames: int,
              max_frames: int, templates: int) -> list[MarsClipJob]:
    """Every clip: session numbers unique across splits, camera-style stems, lengths drawn in [min, max]."""
    rng = rng_for(seed, "mars-plan")
    jobs, number = [], 0
    day = datetime.datetime(2024, 6, 1, 9, 0, 0)
    for split in SPLITS:
        for _ in range(int(sessions.get(split, 0))):
            number += 1
            for c in range(clips_per_session):
                day += datetime.timedelta(minutes=int(rng.integers(2, 30)))
                end = day + datetime.timedelta(seconds=int(rng.integers(5, 70)))
                stem = f"Camera-{day:%Y-%m-%d}-{day:%H%M%S}-{end:%H%M%S}"
                frames = int(rng.integers(min_frames, max_frames + 1))
                jobs.append(MarsClipJob(root, split, f"session{number}", stem, frames, seed, templates))
    return jobs


def generate_mars(root, *, seed: int = 0, sessions: dict[str, int] | None = None, clips_per_session: int = 4,
                  min_frames: int = 100, max_frames: int = 2000, templates: int = 4, progress: bool = True,
                  force: bool = False) -> dict:
    """Write a synthetic MARS-layout dataset under `root`; the bytes depend only on the arguments.

    Each clip acts out one of `templates` scripts of its split (jittered), as the REACT generator's clips do."""
    t0 = time.perf_counter()
    sessions = dict(DEFAULT_SESSIONS if sessions is None else sessions)
    if set(sessions) - set(SPLITS) or sessions.get("train", 0) < 1:
        raise ValueError(f"sessions must name splits of {SPLITS} with >= 1 train session; got {sessions}")
    if not 30 <= min_frames <= max_frames or clips_per_session < 1 or seed < 0 or templates < 1:
        raise ValueError(f"need 30 <= min_frames <= max_frames, clips_per_session >= 1, seed >= 0, templates >= 1; "
                         f"got {min_frames}, {max_frames}, {clips_per_session}, {seed}, {templates}")
    root = Path(root)
    if root.is_dir() and any(root.iterdir()):
        if not force:
            raise FileExistsError(f"output folder {root} is not empty; pass --force to replace the dataset there")
        for split in SPLITS:
            shutil.rmtree(root / split, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    jobs = plan_mars(str(root), seed, sessions, clips_per_session, min_frames, max_frames, templates)
    results = [run_mars_clip(j) for j in tqdm(jobs, desc="synthetic MARS", unit="clip", disable=not progress,
                                               dynamic_ncols=True)]
    args = {"seed": seed, "sessions": sessions, "clips_per_session": clips_per_session, "min_frames": min_frames,
            "max_frames": max_frames, "templates": templates}
    write_json(root / "synthetic.json", {
        "generator": "reactdiff.data.synthetic.mars", "layout": "mars", "fps": M.FPS, "args": args,
        "clips": [{k: r[k] for k in ("split", "session", "stem", "frames", "lags", "template")} for r in results],
        "note": "lags are the planted listener reaction lags in 25 fps frames (x 1.2 at 30 fps)"})
    return {"root": str(root), "clips": len(results), "frames": int(sum(r["frames"] for r in results)),
            "bytes": int(sum(r["bytes"] for r in results)), "seconds": round(time.perf_counter() - t0, 3),
            "args": args}
